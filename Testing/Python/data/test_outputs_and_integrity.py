"""The output rules (atomic.py) and damaged-input detection (data/integrity.py) at their owners."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from MedDIFTLib.atomic import check_outputs, write_text_atomic
from MedDIFTLib.data.geometry import Volume
from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.errors import ImageReadError, InputError, OutputWriteError, hints, opt, render


def test_exclusive_creation_without_force_and_atomic_replacement_with_it(tmp_path):
    p = tmp_path / "a.txt"
    write_text_atomic(p, "one", force=False)
    with pytest.raises(OutputWriteError, match="created by another process"):
        write_text_atomic(p, "two", force=False)
    assert p.read_text() == "one" and [f.name for f in tmp_path.iterdir()] == ["a.txt"]
    write_text_atomic(p, "three", force=True)
    assert p.read_text() == "three"


def test_outputs_never_inputs_and_true_reasons(tmp_path):
    (tmp_path / "in.nrrd").write_text("x")
    with pytest.raises(OutputWriteError, match="is the moving volume"):
        check_outputs({"--heatmap": tmp_path / "in.nrrd"}, {"the moving volume": tmp_path / "in.nrrd"}, force=True)
    with pytest.raises(OutputWriteError, match="same file"):
        check_outputs({"a": tmp_path / "o.csv", "b": tmp_path / "o.csv"}, {})
    with pytest.raises(OutputWriteError, match="is a file, not a folder"):
        check_outputs({"--out": tmp_path / "in.nrrd" / "o.csv"}, {})


def test_truncated_and_short_images_are_refused(tmp_path):
    vol = Volume(np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32) * 300, np.eye(4), "v")
    for ext in (".nii.gz", ".nii"):
        whole = write_volume(vol, tmp_path / f"v{ext}")
        data = whole.read_bytes()
        cut = tmp_path / f"cut{ext}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageReadError, match="is damaged"):
            read_volume(cut)
        assert read_volume(whole).shape == (20, 20, 20)
    raw = gzip.decompress((tmp_path / "v.nii.gz").read_bytes())
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ImageReadError, match="header describes"):
        read_volume(tmp_path / "short.nii.gz")


def test_hints_render_per_interface():
    err = InputError(f"use {opt('radius', 25)}")
    assert str(err) == "use radius = 25" and hints(err) == [{"option": "radius", "value": "25"}]
    assert render(err, "cli") == "use --radius 25"
    assert render(err, "worker") == "use matching.radius_mm = 25"
    assert render(err, "slicer") == "use Advanced > Search radius = 25"


@pytest.mark.parametrize("ext", [".mhd", ".nhdr"])
def test_header_and_data_pairs_are_written_whole_or_not_at_all(tmp_path, ext, monkeypatch):
    """An .mhd/.nhdr pair is built in a private folder, data moved first, header last."""
    rng = np.random.default_rng(1)
    one = Volume(rng.normal(size=(6, 5, 4)).astype(np.float32), np.diag([1.5, 2.0, 2.5, 1.0]), "one")
    two = Volume(rng.normal(size=(7, 5, 4)).astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0]), "two")
    target = tmp_path / f"out{ext}"
    write_volume(one, target)
    names = sorted(f.name for f in tmp_path.iterdir())
    assert target.name in names and len(names) == 2  # the header and its data file, no leftovers
    np.testing.assert_array_equal(read_volume(target).array, one.array)
    with pytest.raises(OutputWriteError, match="exists"):
        write_volume(two, target, force=False)
    np.testing.assert_array_equal(read_volume(target).array, one.array)

    import SimpleITK as sitk

    def disk_full(*args, **kwargs):
        raise RuntimeError("Could not write data: No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", disk_full)  # a failed write: the old pair stays whole
    with pytest.raises(OutputWriteError, match="disk full"):
        write_volume(two, target)
    monkeypatch.undo()
    assert sorted(f.name for f in tmp_path.iterdir()) == names
    np.testing.assert_array_equal(read_volume(target).array, one.array)
    write_volume(two, target)  # and a replacement replaces both files
    assert sorted(f.name for f in tmp_path.iterdir()) == names
    np.testing.assert_array_equal(read_volume(target).array, two.array)
