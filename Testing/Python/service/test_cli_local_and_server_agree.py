"""Every option of ``meddift match`` and ``meddift register``, run locally and through a real
``meddift serve`` (TLS, tokens, 127.0.0.1): the same exit code, the same output files and the same
messages. The cases are checked against the parser, so an option added to either command without
a case here fails this test instead of drifting between the two paths."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")

from server_helpers import ServerProcess, phantom_files  # noqa: E402

from MedDIFTLib.cli import build_parser, main  # noqa: E402
from MedDIFTLib.data.image_io import read_volume, write_volume  # noqa: E402
from MedDIFTLib.data.landmark_io import write_points  # noqa: E402
from MedDIFTLib.data.points import PointSet  # noqa: E402

TOL_MM = 1e-3
"""Points and fields: the server computes in another process (its own thread count), so float32 sums
may differ in their last bits; a thousandth of a millimetre is far below any voxel."""

MATCH = "match {f}/fixed.nrrd {f}/moving.nrrd --points {f}/points.csv --backbone mind-ssc --out {o}/points.csv"
REGISTER = "register {f}/fixed.nrrd {f}/moving.nrrd --backbone mind-ssc --iterations 10 --no-figure --out {o}/reg"
CASES = {
    # id: (command line, exit code); {f}: the module's files, {o}: this run's output folder
    "match-global": (MATCH, 0),
    "match-radius": (MATCH + " --radius 25", 0),
    "prior-identity": (MATCH + " --radius 25 --prior identity", 0),
    "prior-coarse": (MATCH + " --radius 25 --prior coarse", 0),
    "prior-matrix": (MATCH + " --radius 25 --prior {f}/shift.txt", 0),
    "prior-dense": (
        MATCH + " --prior dense --iterations 10 --prealign none --search 15 --grid-spacing 10 --smoothness 1.0",
        0,
    ),
    "search-options": (
        MATCH + " --radius 25 --no-subvoxel --no-forward-backward --memory-budget 8 --coarse-stride 2",
        0,
    ),
    "strategy-native": (MATCH + " --radius 25 --match-strategy native", 0),
    "strategy-upsampled": (MATCH + " --radius 25 --match-strategy upsampled --upsampled-budget 16", 0),
    "mask": (MATCH + " --radius 25 --mask {f}/mask.nrrd", 0),
    "hu-offsets": (
        (MATCH + " --radius 25 --fixed-hu-offset 0 --moving-hu-offset -1024").replace(
            "{f}/moving.nrrd", "{f}/moving-raw.nrrd"
        ),
        0,
    ),
    "levels": (MATCH + " --radius 25 --levels mind2", 0),
    "maisi-only-options-warned": (
        MATCH + " --radius 25 --timestep 5 --ensemble 2 --latent mean --region head --seed 3 --size-policy spacing",
        0,
    ),
    "server-owned-options": (
        MATCH + " --radius 25 --device cpu --weights-dir {f}/no_weights --no-cache --cache-dir {f}/other-cache",
        0,
    ),
    "points-format": (
        MATCH.replace("points.csv --", "points-l2r.csv --") + " --radius 25 --points-format learn2reg",
        0,
    ),
    "skip-outside": (MATCH.replace("points.csv --", "points-far.csv --") + " --radius 25 --skip-outside", 0),
    "heatmap": (MATCH + " --radius 25 --heatmap-for {label} --heatmap {o}/heat.nii.gz --force", 0),
    "heatmap-outside-refused": (
        MATCH.replace("points.csv --", "points-far.csv --") + " --radius 25 --skip-outside "
        "--heatmap-for FAR --heatmap {o}/heat.nii.gz",
        2,
    ),
    "prior-without-radius-refused": (MATCH + " --prior coarse", 2),
    "bad-timestep-refused": (MATCH + " --timestep -1", 2),
    "register": (REGISTER, 0),
    "register-options": (REGISTER + " --prealign affine --search 12 --grid-spacing 10 --smoothness 0.8 --force", 0),
    "register-initial": (REGISTER + " --initial {f}/shift.txt --field-format .nrrd", 0),
    "register-h5-hu-offsets": (
        REGISTER.replace("{f}/moving.nrrd", "{f}/moving-raw.nrrd") + " --field-format .h5 --moving-hu-offset -1024",
        0,
    ),
    "register-engine-options": (
        REGISTER + " --levels mind2 --timestep 5 --ensemble 2 --latent mean --region head "
        "--seed 3 --size-policy spacing --device cpu --weights-dir {f}/no_weights --no-cache "
        "--cache-dir {f}/other-cache --fixed-hu-offset 0",
        0,
    ),
    "register-figure": (REGISTER.replace(" --no-figure", "") + " --field-format .mha", 0),
}
SERVER_FLAGS = {"--server", "--token-file", "--ca-file"}
REFUSED = {"--hu-offset"}  # hidden: refused with a message (test_reliability_cli.py)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    files = phantom_files(tmp_path_factory.mktemp("local_and_server"), 32, seed=5, n_landmarks=5)
    folder, pair, lm = files["folder"], files["pair"], files["lm"]
    raw = pair.moving.with_array(np.asarray(pair.moving.array, dtype=np.float32) + np.float32(1024))
    write_volume(raw, folder / "moving-raw.nrrd")  # a CT stored without its rescale: -1024 corrects it
    i, j, k = np.indices(pair.moving.shape)
    write_volume(pair.moving.with_array(((i // 4 + j // 4 + k // 4) % 2 == 0).astype(np.uint8)), folder / "mask.nrrd")
    np.savetxt(folder / "shift.txt", [[1, 0, 0, 2.0], [0, 1, 0, -1.0], [0, 0, 1, 0], [0, 0, 0, 1]])
    far = PointSet(np.vstack([lm.points, [[900.0, 900.0, 900.0]]]), list(lm.labels) + ["FAR"])
    write_points(far, folder / "points-far.csv")
    write_points(lm, folder / "points-l2r.csv", format="learn2reg", reference=pair.fixed)
    return files


@pytest.fixture(scope="module")
def server(files):
    s = ServerProcess(files["folder"] / "srv", "--token-file", files["token_file"], tls=files["tls"])
    yield s
    s.kill()


def test_every_option_of_match_and_register_has_a_case():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse keeps subparsers here
    for command in ("match", "register"):
        flags = {s for a in sub.choices[command]._actions for s in a.option_strings if s.startswith("--")}
        covered = {w for line, _ in CASES.values() if line.split()[0] == command for w in line.split()}
        missing = sorted(flags - covered - SERVER_FLAGS - REFUSED - {"--help"})
        assert not missing, f"meddift {command} options without a local-vs-server case: {missing}"


def _run(case: str, files, server, out: Path, capsys, remote: bool):
    line, _ = CASES[case]
    out.mkdir(parents=True, exist_ok=True)
    args = line.format(f=files["folder"], o=out, label=files["lm"].labels[1]).split()
    if remote:
        args += ["--server", server.url, "--token-file", files["token_file"], "--ca-file", files["tls"]["ca"]]
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def _messages(err: str, out: Path, place: str) -> list:
    """The ``meddift:`` lines (not the progress lines, whose stages differ: uploads, the server's queue),
    with this run's folder and the times taken made neutral; the line that says where it ran checked
    and dropped."""
    lines = [ln for ln in err.splitlines() if ln.startswith("meddift:")]
    where = [ln for ln in lines if ln.startswith("meddift: computing on ")]
    assert all(ln.startswith(f"meddift: computing on {place}, device ") for ln in where), where
    return [re.sub(r"; [0-9.]+ s$", "; T s", ln.replace(str(out), "OUT")) for ln in lines if ln not in where]


def _same_file(a: Path, b: Path) -> None:
    name = a.name
    if name.endswith(".csv"):  # read as text: a row without a position is not a point a reader accepts
        ra, rb = (list(csv.reader(p.read_text().splitlines())) for p in (a, b))
        assert [len(r) for r in rb] == [len(r) for r in ra]
        for row_a, row_b in zip(ra, rb):
            for x, y in zip(row_a, row_b):
                assert _cell(y) == pytest.approx(_cell(x), abs=TOL_MM, nan_ok=True), (row_a, row_b)
    elif name.endswith(".json"):
        ra, rb = (json.loads(p.read_text()) for p in (a, b))
        ra.pop("seconds"), rb.pop("seconds")
        assert sorted(ra) == sorted(rb)
        np.testing.assert_allclose(rb["jacobian"]["jacobian_min"], ra["jacobian"]["jacobian_min"], atol=1e-3)
        assert {k: v for k, v in rb.items() if k not in ("jacobian", "prealign_ras")} == {
            k: v for k, v in ra.items() if k not in ("jacobian", "prealign_ras")
        }
        np.testing.assert_allclose(rb["prealign_ras"], ra["prealign_ras"], atol=1e-4)
    elif name.endswith(".png"):
        assert b.stat().st_size > 0
    elif name.startswith(("field", "inverse_field")):
        np.testing.assert_allclose(_vectors(b), _vectors(a), atol=1e-4)
    else:
        va, vb = read_volume(a), read_volume(b)
        np.testing.assert_allclose(vb.ijk_to_ras, va.ijk_to_ras, atol=1e-6)
        np.testing.assert_allclose(vb.array, va.array, atol=1e-3)


def _cell(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _vectors(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    if path.suffix == ".h5":
        tx = sitk.DisplacementFieldTransform(sitk.ReadTransform(str(path)))
        return sitk.GetArrayFromImage(tx.GetDisplacementField())
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path), sitk.sitkVectorFloat64))


@pytest.mark.parametrize("case", sorted(CASES))
def test_local_and_server_runs_write_the_same_files_and_say_the_same(
    case, files, server, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(files["folder"] / "no_weights"))
    monkeypatch.setenv("MEDDIFT_CACHE_DIR", str(files["folder"] / "cache"))
    local_code, local_err = _run(case, files, server, tmp_path / "local", capsys, remote=False)
    remote_code, remote_err = _run(case, files, server, tmp_path / "remote", capsys, remote=True)
    assert local_code == remote_code == CASES[case][1], (local_err, remote_err)
    assert files["tokens"][0] not in remote_err
    said = _messages(local_err, tmp_path / "local", "this machine")
    assert _messages(remote_err, tmp_path / "remote", server.url) == said
    local_files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*") if p.is_file())
    remote_files = sorted(p.relative_to(tmp_path / "remote") for p in (tmp_path / "remote").rglob("*") if p.is_file())
    assert remote_files == local_files
    for rel in local_files:
        _same_file(tmp_path / "local" / rel, tmp_path / "remote" / rel)
    if CASES[case][1] == 0:
        assert local_files, f"{case}: nothing written"
