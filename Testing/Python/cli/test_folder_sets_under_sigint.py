"""``meddift demo`` and ``meddift evaluate`` write their files as one set: a run sent SIGINT at one of
its writes leaves the earlier complete set byte for byte, or no folder at all, never a mix; leftovers
never refuse the next run; an earlier set is replaced only with ``--force``, as a whole.

Real subprocesses, stopped at the k-th file of the set's private folder (``Testing/Python/interrupts.py``,
the mechanism the ``register`` and ``match`` SIGINT tests use). The demo runs on its own phantom
(the CLI has no size option) with 2 landmarks, no dense row and MIND-SSC; ``evaluate`` on one phantom
case with the identity method. ``COMMANDS`` is the table a new folder-filling command joins.
"""

from __future__ import annotations

import shutil

import pytest

from interrupts import INTERRUPTED, contents, interrupt_after, meddift_process, names  # Testing/Python, on sys.path
from MedDIFTLib.errors import OutputWriteError
from MedDIFTLib.outputs import FolderSet

DEMO = ["demo", "--out", "set", "--no-dense", "--landmarks", "2", "--backbone", "mind-ssc", "--no-cache"]
EVALUATE = ["evaluate", "--out", "set", "--methods", "identity", "--seeds", "0", "--amplitudes", "15"]
EVALUATE += ["--noise", "0", "--landmarks", "2", "--no-hard-cases"]
COMMANDS = {
    # command: (its arguments, other arguments that change the set's content, the writes to stop at:
    # k files finished in the private folder while the next is computed)
    "demo": (DEMO, ["--landmarks", "3"], {"first run": [1, 8], "--force": [4]}),
    "evaluate": (EVALUATE, ["--amplitudes", "25"], {"first run": [1, 2], "--force": [2]}),
}
CASES = [(c, when, k) for c, (_, _, at) in COMMANDS.items() for when, ks in at.items() for k in ks]


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """Each command's complete set, made once by an uninterrupted run."""
    sets = {}
    for command, (args, _, _) in COMMANDS.items():
        folder = tmp_path_factory.mktemp(command)
        proc = meddift_process(args, folder)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        sets[command] = folder / "set"
    return sets


@pytest.mark.parametrize("command,when,k", [c for c in CASES if c[1] == "first run"])
def test_a_first_run_interrupted_at_a_write_leaves_no_folder_and_the_next_run_is_not_refused(
    tmp_path, command, when, k
):
    args = COMMANDS[command][0]
    proc = meddift_process(args, tmp_path)
    assert interrupt_after(proc, tmp_path / "set", k)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in INTERRUPTED, err
    assert "Traceback" not in err, err
    assert names(tmp_path / "set") == []  # no file alone, no private folder, not the folder it made
    FolderSet.check(tmp_path / "set", command)  # what the next run checks first: nothing refuses it


@pytest.mark.parametrize("command,when,k", [c for c in CASES if c[1] == "--force"])
def test_force_over_a_complete_set_interrupted_at_a_write_keeps_the_earlier_set(complete, tmp_path, command, when, k):
    args, other, _ = COMMANDS[command]
    shutil.copytree(complete[command], tmp_path / "set")
    (tmp_path / "set" / "notes.txt").write_text("the user's own notes")  # beside the set: never touched
    before = contents(tmp_path / "set")
    proc = meddift_process([*args, *other, "--force"], tmp_path)
    assert interrupt_after(proc, tmp_path / "set", k)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in INTERRUPTED, err
    assert contents(tmp_path / "set") == before  # the earlier set, byte for byte, and nothing else
    assert names(tmp_path / "set") == sorted(set(before))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_earlier_set_is_refused_without_force_before_any_work(complete, tmp_path, command):
    args = COMMANDS[command][0]
    shutil.copytree(complete[command], tmp_path / "set")
    before = contents(tmp_path / "set")
    proc = meddift_process(args, tmp_path)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2 and "holds the outputs of an earlier meddift" in err and "--force" in err, err
    assert contents(tmp_path / "set") == before


def test_force_replaces_the_earlier_set_as_a_whole_and_keeps_what_a_user_added(tmp_path):
    """The mark lists the set's names: a run with --force removes the earlier set's files it does not
    write again (here a plot of a dataset not evaluated now) in the same step, and nothing else."""
    folder = tmp_path / "set"
    with FolderSet(folder, "evaluate", ["report.md", "old_tre_box.png"]) as files:
        files.path("report.md").write_text("old report")
        files.path("old_tre_box.png").write_bytes(b"old plot")
        files.commit()
    (folder / "notes.txt").write_text("the user's own notes")
    with pytest.raises(OutputWriteError, match="output exists"):
        FolderSet(folder, "evaluate", ["report.md"])
    with FolderSet(folder, "evaluate", ["report.md", "new_tre_box.png"], force=True) as files:
        files.path("report.md").write_text("new report")
        files.path("new_tre_box.png").write_bytes(b"new plot")
        files.commit()
    assert names(folder) == [".meddift-evaluate", "new_tre_box.png", "notes.txt", "report.md"]
    assert (folder / "report.md").read_text() == "new report"
    assert (folder / ".meddift-evaluate").read_text().splitlines()[1:] == ["report.md", "new_tre_box.png"]
