"""Every writer, given an output path that is one of its inputs (the same file, through another
spelling, or a folder the inputs are in), refuses before any work and leaves the input as it was,
even when replacing is allowed: ``meddift match``, ``register``, ``demo``, ``evaluate``, ``ablate``,
``batch``, ``recist``, and the worker's ``register`` and ``heatmap`` (``meddift batch``'s pairs:
``Testing/Python/batch/test_batch_outputs.py``). A command with ``--out`` that is missing from
:data:`CASES` or from :data:`SIGINT_TESTS` fails :func:`test_every_command_that_writes_is_in_the_class_tables`,
so that a new writer inherits both rules.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_runner import run_meddift  # Testing/Python, on sys.path
from MedDIFTLib.data.image_io import write_volume
from MedDIFTLib.data.landmark_io import write_points
from MedDIFTLib.errors import OutputWriteError
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.outputs import refuse_input_overlap

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def files(tmp_path):
    pair = make_pair(seed=6, shape=(32, 32, 32), spacing=(6.0, 6.0, 6.0))
    write_volume(pair.fixed, tmp_path / "f.nii.gz")
    write_volume(pair.moving, tmp_path / "m.nii.gz")
    write_points(sample_landmarks(pair, n=3, seed=6), tmp_path / "p.csv")
    return tmp_path


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def meddift(d, *args):
    p = run_meddift(*args, folder=d)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stderr


CASES = {
    "match --out is the points file": (
        ["match", "f.nii.gz", "m.nii.gz", "--points", "p.csv", "--out", "./p.csv", "--force"],
        "is the --points file",
    ),
    "match --heatmap is the moving scan": (
        [
            "match",
            "f.nii.gz",
            "m.nii.gz",
            "--points",
            "p.csv",
            "--out",
            "o.csv",
            "--heatmap",
            "sub/../m.nii.gz",
            "--heatmap-for",
            "P0",
            "--force",
        ],
        "is the moving volume",
    ),
    "register --out holds the fixed scan under an output name": (
        ["register", "reg/field.nii.gz", "m.nii.gz", "--out", "reg", "--force"],
        "is the fixed volume",
    ),
    "demo --out holds a user's files": (["demo", "--out", ".", "--force"], "holds files meddift demo did not write"),
    "evaluate --out inside a dataset": (
        ["evaluate", "--no-phantom", "--learn2reg", ".", "--out", "results", "--force"],
        "lies inside --learn2reg",
    ),
    "ablate --out inside a dataset": (
        ["ablate", "--no-phantom", "--learn2reg", ".", "--out", "results", "--force"],
        "lies inside --learn2reg",
    ),
    "batch --out holds the cohort file as its summary": (
        ["batch", "summary.csv", "--out", ".", "--mode", "points"],
        "is the cohort file",
    ),
    "recist --out is the lengths file": (
        ["recist", "summary.csv", "--out", "./summary.csv", "--force"],
        "is the lengths file",
    ),
}
SIGINT_TESTS = {
    # command -> where it is sent SIGINT at its writes through the real CLI (or why it needs no test of its own)
    "match": "cli/test_output_sets.py",
    "register": "cli/test_output_sets.py",
    "demo": "cli/test_folder_sets_under_sigint.py",
    "evaluate": "cli/test_folder_sets_under_sigint.py",
    "ablate": "evaluate's writer: evaluation/harness.py write_report, one FolderSet",
    "batch": "batch/test_batch_sigint.py",
    "recist": "followup/test_recist_cli.py",
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_cli_writer_refuses_an_input_as_output_even_with_force(files, case):
    args, expected = CASES[case]
    (files / "sub").mkdir()
    (files / "reg").mkdir()
    os.link(files / "f.nii.gz", files / "reg" / "field.nii.gz")  # the fixed scan, reached by another name
    labels = [ln.split(",")[0] for ln in (files / "p.csv").read_text().splitlines()[1:]]
    args = [labels[0] if a == "P0" else a for a in args]
    if args[0] == "batch":
        pytest.importorskip("ray", reason="Ray is not installed (pip install 'meddift[cluster]')")
    # a cohort (batch) or lengths file (recist) that lies where the command writes its summary
    (files / "summary.csv").write_text("id,fixed,moving,points\na,f.nii.gz,m.nii.gz,p.csv\n")
    before = _snapshot(files)
    rc, err = meddift(files, *args)
    assert rc == 2 and expected in err, err
    assert _snapshot(files) == before  # nothing written, nothing replaced


def test_the_worker_refuses_a_loaded_input_or_an_existing_file_as_a_register_output(files):
    from MedDIFTLib.service.client import WorkerClient

    (files / "old.nrrd").write_bytes(b"an earlier result the user keeps")
    before = _snapshot(files)
    client = WorkerClient(env=dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(files / "none")))
    client.start(timeout=120)
    try:
        client.request("configure", engine={"backbone": "mind-ssc", "device": "cpu", "use_cache": False})
        client.request("load_volume", name="f", path=str(files / "f.nii.gz"))
        client.request("load_volume", name="m", path=str(files / "m.nii.gz"))
        for fields, expected in [
            ({"out": str(files / "f.nii.gz"), "force": True}, "register 'out' .* is loaded volume 'f'"),
            (
                {"out": str(files / "x.nrrd"), "warped": str(files / "m.nii.gz"), "force": True},
                "register 'warped' .* is loaded volume 'm'",
            ),
            ({"out": str(files / "x.nrrd"), "inverse": str(files / "old.nrrd")}, "output exists"),
        ]:
            with pytest.raises(Exception, match=expected):
                client.request("register", fixed="f", moving="m", **fields)
        with pytest.raises(Exception, match="heatmap 'out' .* is loaded volume 'm'"):
            client.request(
                "heatmap", fixed="f", moving="m", point=[0.0, 0.0, 0.0], out=str(files / "m.nii.gz"), force=True
            )
    finally:
        client.kill()
    assert _snapshot(files) == before


def test_an_output_inside_an_input_folder_or_through_a_symlink_is_refused(files):
    series = files / "series"  # a DICOM series is a folder of files
    series.mkdir()
    (series / "1.dcm").write_bytes(b"slice")
    with pytest.raises(OutputWriteError, match="lies inside the fixed volume"):
        refuse_input_overlap({"--out": series / "new.csv"}, {"the fixed volume": series})
    (files / "link.nii.gz").symlink_to(files / "m.nii.gz")
    with pytest.raises(OutputWriteError, match="is the moving volume"):
        refuse_input_overlap({"--heatmap": files / "link.nii.gz"}, {"the moving volume": files / "m.nii.gz"})
    # beside the inputs, not among them: allowed
    refuse_input_overlap({"--out": files / "other.csv"}, {"the fixed volume": series, "moving": files / "m.nii.gz"})


def test_a_command_filling_a_folder_takes_only_a_new_empty_or_its_own_folder(tmp_path):
    from MedDIFTLib.outputs import claim_folder

    claim_folder(tmp_path / "new", "demo")  # made and marked
    (tmp_path / "new" / "summary.json").write_text("{}")  # what the demo writes
    claim_folder(tmp_path / "new", "demo")  # an earlier demo's folder: taken again
    with pytest.raises(OutputWriteError, match="holds files meddift evaluate did not write"):
        claim_folder(tmp_path / "new", "evaluate")  # another command's folder is foreign to it
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "summary.json").write_text("a user's file")
    with pytest.raises(OutputWriteError, match=r"holds files meddift demo did not write \(summary\.json\)"):
        claim_folder(tmp_path / "mine", "demo")
    assert (tmp_path / "mine" / "summary.json").read_text() == "a user's file"


def test_every_command_that_writes_is_in_the_class_tables():
    """Each subcommand with ``--out`` has a case in :data:`CASES` (an input as its output) and an entry in
    :data:`SIGINT_TESTS` naming its SIGINT test, which exists and runs that command."""
    import argparse

    from MedDIFTLib.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    writers = {n for n, p in sub.choices.items() if "--out" in {o for a in p._actions for o in a.option_strings}}
    assert writers == {args[0] for args, _ in CASES.values()}
    assert writers == set(SIGINT_TESTS)
    tests = REPO / "Testing" / "Python"
    for command, where in SIGINT_TESTS.items():
        if where.endswith(".py"):
            text = (tests / where).read_text()
            assert f'"{command}"' in text and "SIGINT" in text, (command, where)
