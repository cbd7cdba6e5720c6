"""One owner of what a job may write and remove: output sets that are whole or absent.

A command that writes several files (``register``: field, inverse field, warped scan, report,
figure; a batch pair: points, field, manifest) leaves them as one unit. :class:`OutputSet`
builds every file aside, in a private folder next to its target (same file system, so a rename
moves it), and puts them in place together: the folder holds the old complete set or the new
one, never a mix.

- Every target is checked first against every input of the job (:func:`~MedDIFTLib.atomic.check_outputs`:
  not an input, not inside an input folder, free unless ``force``).
- Putting in place: each old member is renamed into the private folder, then each new file is
  hard-linked to its name (a link fails if the name was taken meanwhile). Any failure undoes
  the steps already done. SIGINT and SIGTERM wait for this step (it takes microseconds), so a
  Ctrl-C leaves the old set or the new one.
- A process killed in the middle (SIGKILL, power loss) leaves a journal in its private folder;
  the next :class:`OutputSet` on that folder, or :func:`recover`, undoes the half-done step.
- Clean-up removes only what this run created, recorded as it was created (:class:`Created`):
  its private folders and the folders it had to make, and those only when empty of anything else.
- A command that fills a folder of its own (``demo``, ``evaluate``, ``ablate``) writes it as one set
  too (:class:`FolderSet`), its mark included, which lists the set's names for the next ``force``.

Every writer goes through here; a new one (the server's job files) checks its output paths with
:func:`refuse_input_overlap` and writes through :class:`OutputSet`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .atomic import _umask, check_outputs, reason, refuse_input_overlap
from .errors import MedDIFTError, OutputWriteError, opt

STAGE_PREFIX = ".meddift-staging-"
"""The private folders' names start so; :func:`recover` touches no other folder."""
_JOURNAL = "journal.json"
_OWNER = "owner"


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM arriving inside wait until it ends, then act as they would have (main thread
    only: Python delivers signals there; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, lambda num, frame: got.append(num))
        except (ValueError, OSError):  # not settable here
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if got:
            signal.raise_signal(got[0])


class Created:
    """Folders a run made, recorded as it makes them, so that clean-up removes exactly those (and
    only when nothing else is in them)."""

    def __init__(self) -> None:
        self.folders: list[Path] = []

    def mkdir(self, folder) -> Path:
        """Make ``folder`` and its missing parents, recording each one made here.

        Args:
            folder: the folder wanted.
        """
        folder = Path(folder)
        missing = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
        for p in missing:
            try:
                p.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                raise OutputWriteError(f"cannot make {p}: {reason(err, p)}") from err
            self.folders.append(p)
        return folder

    def remove_empty(self) -> None:
        """Remove the folders this run made, deepest first, those still empty (a user's file kept)."""
        for p in reversed(self.folders):
            with contextlib.suppress(OSError):
                p.rmdir()
        self.folders.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _link_or_rename(staged: str, target: str) -> None:
    """Hard-link (fails if the name was taken meanwhile; the private copy stays, so a killed run can be
    undone); where the file system has no hard links, rename after an exclusive create of the name."""
    try:
        os.link(staged, target)
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(staged, target)


def _undo(moves: list, placed: int, backed: int) -> None:
    """Undo a half-done put-in-place: remove new files placed, rename old members back."""
    for staged, target, _ in moves[:placed]:
        with contextlib.suppress(OSError):
            if os.path.exists(staged) and os.path.samefile(staged, target):
                os.unlink(target)
    for _, target, backup in moves[:backed]:
        if os.path.lexists(backup):
            with contextlib.suppress(OSError):
                os.replace(backup, target)


def recover(folder) -> None:
    """Finish what a killed run left in ``folder``: undo a half-done put-in-place (journal), remove
    private folders of runs no longer alive. Other files and folders are not touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for stage in folder.glob(STAGE_PREFIX + "*"):
        try:
            pid = int((stage / _OWNER).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # not one of ours (no owner mark): left alone
        if _alive(pid):
            continue  # a run still writing (this process's own included)
        try:
            journal = json.loads((stage / _JOURNAL).read_text())
        except (OSError, ValueError):
            journal = None
        if journal and not journal.get("done"):
            _undo([tuple(m) for m in journal["moves"]], len(journal["moves"]), len(journal["moves"]))
        shutil.rmtree(stage, ignore_errors=True)


def claim_folder(folder, who: str, inputs: dict | None = None, make: bool = True) -> Path:
    """A folder that a command fills with files of its own names (``meddift demo``, ``evaluate``):
    refused when it is an input or lies inside one, and when it holds anything that no earlier run of
    the command wrote (recognised by the mark it leaves, never by file names); made if missing, and
    marked as the command's (with ``make``; :class:`FolderSet` leaves both to its commit, so that an
    interrupted first run leaves no folder behind).

    Args:
        folder: the ``--out`` folder.
        who: the command (``demo``), named in the mark and the message.
        inputs: name -> path of the command's inputs.
        make: make and mark the folder now.
    """
    folder = Path(folder)
    refuse_input_overlap({"--out": folder}, inputs or {})
    mark = folder / f".meddift-{who}"
    recover(folder)  # a killed run's private folder is no reason to refuse the folder
    if folder.is_dir() and not mark.exists():
        # a live run's private folder is not foreign: two runs at once meet at the put-in-place instead
        found = sorted(p.name for p in folder.iterdir() if not p.name.startswith(STAGE_PREFIX))
        if found:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise OutputWriteError(
                f"--out {folder} holds files meddift {who} did not write ({shown}); it never "
                "writes over those: choose a new or empty folder"
            )
    if make:
        Created().mkdir(folder)
        if not mark.exists():
            mark.write_text(f"written by meddift {who}\n")
    return folder


class OutputSet:
    """The files of one job, built aside and put in place together (see the module's docstring).

    Use as a context manager: write each file to :meth:`path` (its private copy), then call
    :meth:`commit`. Leaving the block without a commit (an error, a Ctrl-C) discards the private
    copies and leaves the targets as they were.

    Args:
        targets: name the user knows (``--out field.nii.gz``) -> final path.
        inputs: name -> path of every input of the job (files or folders); no target may be one.
        force: replace an existing complete set; without it every target must be free.
        members: further paths that belong to the set when they exist (an old figure this run does
            not draw): with ``force`` they are removed in the same step, so no old member survives
            beside new ones.
        labels: name -> how the user knows that output (``--out field.nii.gz``), for messages.
    """

    def __init__(
        self,
        targets: dict,
        inputs: dict | None = None,
        force: bool = False,
        members: tuple = (),
        labels: dict | None = None,
    ) -> None:
        self.targets = {k: Path(v) for k, v in targets.items()}
        self.force = force
        self.members = [Path(m) for m in members if Path(m) not in self.targets.values()]
        check_outputs({(labels or {}).get(k, k): p for k, p in self.targets.items()}, inputs or {}, force)
        refuse_input_overlap({f"{m.name}": m for m in self.members}, inputs or {})
        self.created = Created()
        self._stages: dict = {}

    def __enter__(self) -> OutputSet:
        # a Ctrl-C while the private folders are made waits for the last one to be recorded, then
        # removes them all: ``__exit__`` does not run for an ``__enter__`` that raised
        try:
            with deferred_interrupts():
                for target in self.targets.values():
                    self._stage_for(target.parent)
        except BaseException:
            self._discard()
            self.created.remove_empty()
            raise
        return self

    def _stage_for(self, parent: Path) -> None:
        """Make (once) the private folder beside the targets in ``parent``, owned by this process."""
        if parent in self._stages:
            return
        self.created.mkdir(parent)
        recover(parent)
        try:
            stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=parent))
        except OSError as err:
            raise OutputWriteError(
                f"cannot write in {parent}: {reason(err, parent)}; nothing was changed there"
            ) from err
        self._stages[parent] = stage
        (stage / _OWNER).write_text(f"{os.getpid()}\n")

    def path(self, name: str) -> Path:
        """Where to write the file ``name`` (a key of ``targets``) before the commit."""
        target = self.targets[name]
        return self._stages[target.parent] / target.name

    def written(self) -> dict:
        """name -> final path of each target whose private copy exists."""
        return {k: t for k, t in self.targets.items() if self.path(k).exists()}

    def commit(self) -> dict:
        """Put every written file in place at once; return name -> final path of those."""
        written = self.written()
        moves = []
        for name, target in written.items():
            moves.append((str(self.path(name)), str(target), str(self._stages[target.parent] / f".old.{target.name}")))
        stale = [
            t for t in list(self.targets.values()) + self.members if t not in written.values() and os.path.lexists(t)
        ]
        if stale and not self.force:
            raise OutputWriteError(f"output exists: {stale[0]}; choose another folder or use {opt('force')}")
        for t in stale:
            moves.append(
                ("", str(t), str(self._stages.get(t.parent, next(iter(self._stages.values()))) / f".old.{t.name}"))
            )
        mode = 0o666 & ~_umask()
        for staged, _, _ in moves:
            if staged:
                os.chmod(staged, mode)
        with deferred_interrupts():
            self._put_in_place(moves)
        self._discard()
        return written

    def _put_in_place(self, moves: list) -> None:
        """Rename old members aside, link new files in; on any failure undo and raise."""
        journals = {Path(b).parent / _JOURNAL for _, _, b in moves}
        for j in journals:
            j.write_text(json.dumps({"moves": moves, "done": False}))
        backed, placed = 0, []
        try:
            for staged, target, backup in moves:
                if os.path.lexists(target):
                    if not self.force:
                        raise FileExistsError(errno.EEXIST, "exists", target)
                    os.replace(target, backup)
                backed += 1
                if staged:
                    _link_or_rename(staged, target)
                    placed.append(target)
        except OSError as err:
            for target in placed:
                with contextlib.suppress(OSError):
                    os.unlink(target)
            _undo(moves, 0, backed)
            where = Path(getattr(err, "filename", None) or moves[0][1])
            raise OutputWriteError(
                f"cannot write {where}: {reason(err, where)}; the earlier files are as they were"
            ) from err
        for j in journals:
            j.write_text(json.dumps({"moves": moves, "done": True}))

    def _discard(self) -> None:
        for stage in self._stages.values():
            shutil.rmtree(stage, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._discard()
        if exc_type is not None:
            self.created.remove_empty()
        if isinstance(exc, MedDIFTError):  # a writer names the private copy: say the file the user asked for
            text = exc.template
            for name, target in self.targets.items():
                text = text.replace(str(self.path(name)), str(target))
            if text != exc.template:
                raise type(exc)(text) from exc


class FolderSet(OutputSet):
    """The files a command puts in a folder of its own (``meddift demo``, ``evaluate``) as one
    :class:`OutputSet`: the folder's mark (``.meddift-<who>``) is a member of the set and lists its
    names, so that a run with ``force`` replaces exactly the earlier set (an old plot this run does not
    draw included) and nothing a user put beside it, and an interrupted first run leaves no folder.

    Args:
        folder: the ``--out`` folder.
        who: the command (``demo``), named in the mark and the messages.
        names: the file names this run writes (the keys of :meth:`path`).
        inputs: name -> path of the command's inputs.
        force: replace an earlier set; without it the folder must hold none.
    """

    def __init__(self, folder, who: str, names, inputs: dict | None = None, force: bool = False) -> None:
        folder = Path(folder)
        self.check(folder, who, inputs, force)
        self.mark = folder / f".meddift-{who}"
        self.who = who
        targets = {n: folder / n for n in names}
        targets[self.mark.name] = self.mark
        # an earlier set's files, never a folder a user has made under one of their names since
        earlier = tuple(folder / n for n in self.listed(self.mark) if not (folder / n).is_dir())
        labels = {n: f"--out {n}" for n in targets}
        super().__init__(targets, inputs, force, members=earlier, labels=labels)

    @staticmethod
    def check(folder, who: str, inputs: dict | None = None, force: bool = False) -> None:
        """Before any work: the folder takes this command's set (see :func:`claim_folder`), and holds
        no earlier set unless ``force``.

        Args:
            folder: the ``--out`` folder.
            who: the command.
            inputs: name -> path of the command's inputs.
            force: an earlier set may be replaced.
        """
        folder = Path(folder)
        claim_folder(folder, who, inputs, make=False)
        if (folder / f".meddift-{who}").exists() and not force:
            raise OutputWriteError(
                f"output exists: {folder} holds the outputs of an earlier meddift {who}; choose another "
                f"folder or use {opt('force')} to replace them (as a whole)"
            )

    @staticmethod
    def listed(mark: Path) -> list:
        """The file names an earlier run's mark lists (plain names only; none in a mark of an older
        version, which listed nothing)."""
        try:
            lines = mark.read_text(encoding="utf-8").splitlines()[1:]
        except (OSError, UnicodeDecodeError):
            return []
        return [n for n in lines if n and Path(n).name == n and n not in (".", "..") and n != mark.name]

    def commit(self) -> dict:
        """Write the mark listing the set's names, then put the set in place (see :meth:`OutputSet.commit`)."""
        names = [n for n in self.written() if n != self.mark.name]
        self.path(self.mark.name).write_text(f"written by meddift {self.who}\n" + "".join(f"{n}\n" for n in names))
        return super().commit()


__all__ = [
    "OutputSet",
    "FolderSet",
    "Created",
    "claim_folder",
    "recover",
    "deferred_interrupts",
    "refuse_input_overlap",
    "STAGE_PREFIX",
]
