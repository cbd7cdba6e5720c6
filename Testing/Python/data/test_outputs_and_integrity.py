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
