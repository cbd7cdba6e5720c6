"""Writing outputs: never over an input, never over an existing file unasked, never half a file.

The rules, owned here for every file MedDIFT writes (points, heatmaps, figures):

- an output is never one of the inputs, even when replacing is allowed (:func:`check_outputs`);
- without ``force`` creation is exclusive: an existing file, or one another process creates
  meanwhile, is refused (the complete new file is linked into place only if the name is free);
- with ``force`` the replacement is atomic: a temporary file beside the target, renamed into place;
- a crash, a cancel or a full disk leaves the old file or the complete new one, and no temporary file;
- written files get the user's normal permissions (``0666`` less the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from .errors import OutputWriteError, opt


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and not thread-safe)
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def reason(err: OSError, path) -> str:
    """What went wrong with ``path``, in the user's terms (not every OSError is a full disk)."""
    path = Path(path)
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"{os.strerror(code)} (is the disk full?)"
    if code == errno.EEXIST:
        return f"it was created by another process meanwhile; choose another name or use {opt('force')}"
    if code in (errno.ENOTDIR, errno.ENOENT):
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            return f"{parent} is a file, not a folder"
        return "its folder does not exist"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write in {path.parent}" if code != errno.EROFS else "read-only file system"
    if code == errno.EISDIR:
        return "it is a folder"
    return err.strerror or str(err)


def check_output_path(path, force: bool = False) -> Path:
    """Refuse, before any work, an output that cannot be written: an existing file without ``force``,
    a folder, a parent that is a file or not writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputWriteError(f"cannot write {path}: it is a folder; name a file")
    if path.exists() and not force:
        raise OutputWriteError(f"output exists: {path}; choose another name or use {opt('force')} to replace it")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir():
        raise OutputWriteError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputWriteError(f"cannot write {path}: no permission to write in {parent}")
    return path


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _identities(path: Path) -> list[str | tuple[int, int]]:
    """What makes two spellings one file: the resolved path, and (device, inode) when it exists."""
    keys: list[str | tuple[int, int]] = []
    try:
        keys.append(str(path.resolve()))
        st = os.stat(path)
        keys.append((st.st_dev, st.st_ino))
    except OSError:
        pass
    return keys


def _input_index(inputs: dict) -> tuple[dict, dict]:
    """Every input and every file it is made of, by identity; and the input folders, by resolved path.
    Built once, so that checking a cohort's thousands of outputs stays linear."""
    files: dict[str | tuple[int, int], tuple[str, Path]] = {}
    folders: dict[str, tuple[str, Path]] = {}
    for name, path in inputs.items():
        for p in [path, *_companions(path)]:
            for key in _identities(p):
                files.setdefault(key, (name, path))
        if path.is_dir():
            folders.setdefault(str(path.resolve()), (name, path))
    return files, folders


def refuse_input_overlap(outputs: dict, inputs: dict) -> None:
    """Refuse an output that is one of the inputs: the same file (through a symlink, a relative
    path or a hard link), a file an input is made of (an .mhd's data file, a DICOM series' slice),
    or a path inside an input folder (a DICOM series). Holds even when replacing is allowed. Both
    map a name the user knows (``--out``, ``the moving volume``) to a path.

    Args:
        outputs: name -> path of every file the job writes.
        inputs: name -> path of every file or folder the job reads.
    """
    files, folders = _input_index({k: Path(v) for k, v in inputs.items() if v})
    for oname, opath in ((k, Path(v)) for k, v in outputs.items() if v):
        hit = next((files[k] for k in _identities(opath) if k in files), None)
        if hit is not None:
            raise OutputWriteError(
                f"{oname} {opath} is {hit[0]}: an output never replaces an input "
                "(not even when replacing is allowed); choose another name"
            )
        try:
            above = [str(p) for p in opath.resolve().parents]
        except OSError:
            above = []
        hit = next((folders[p] for p in above if p in folders), None)
        if hit is not None:
            raise OutputWriteError(
                f"{oname} {opath} lies inside {hit[0]} {hit[1]}, a folder the job reads: "
                "an output never goes among the inputs; choose another place"
            )


def check_outputs(outputs: dict, inputs: dict, force: bool = False) -> None:
    """``outputs`` and ``inputs`` map a name the user knows (``--out``, ``the moving volume``) to a path.
    Refuse an output that is an input (even with ``force``, :func:`refuse_input_overlap`), two
    outputs on one path, and each output :func:`check_output_path` refuses."""
    outs = {k: Path(v) for k, v in outputs.items() if v}
    refuse_input_overlap(outputs, inputs)
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if _same(outs[a], outs[b]):
                raise OutputWriteError(f"{a} and {b} are the same file {outs[a]}; give each its own name")
    for opath in outs.values():
        check_output_path(opath, force)


def _companions(path: Path) -> list:
    """Files an input is made of besides its own path: a DICOM folder's files, an .mhd/.nhdr data file."""
    if path.is_dir():
        return [p for p in path.iterdir() if p.is_file()][:10000]
    if path.suffix.lower() in (".mhd", ".nhdr") and path.is_file():
        try:
            for line in path.read_text(errors="replace").splitlines()[:100]:
                key, _, value = line.partition("=") if path.suffix.lower() == ".mhd" else line.partition(":")
                if key.strip().lower() in ("elementdatafile", "data file", "datafile") and value.strip():
                    return [path.parent / value.strip()]
        except OSError:
            pass
    return []


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp", force: bool = True):
    """Yield a temporary path in ``path``'s folder; on success it becomes ``path``: replacing it
    (``force``) or only if the name is still free (exclusive)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as err:
        raise OutputWriteError(f"cannot write {path}: {reason(err, path)}; nothing was changed there") from err
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the name exists: the exclusive creation
            except FileExistsError as err:
                raise OutputWriteError(f"cannot write {path}: {reason(err, path)}") from err
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                    raise
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # no hard links here
                os.close(fd)
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str, force: bool = True) -> Path:
    """Write ``text`` (UTF-8, as given), synced to disk before it takes the name (see :func:`atomic_path`)."""
    try:
        with atomic_path(path, force=force) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
    except OutputWriteError:
        raise
    except OSError as err:
        raise OutputWriteError(f"cannot write {path}: {reason(err, path)}; nothing was changed there") from err
    return Path(path)
