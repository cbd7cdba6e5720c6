"""Python packages the engine needs inside Slicer, installed on first use (never at import).

torch comes from the PyTorch extension's utilities (the right CUDA or CPU
build for the machine); the rest from ``Resources/requirements.txt``.
Slicer's own packages are never replaced: requirement lines that name them
are dropped, and because a dependency (MONAI) may itself ask pip for a newer
numpy or torch, every install also gets a pip *constraints* file pinning each
protected package, and torch once present, to the version Slicer already has
(:func:`pip_install_constrained`: Slicer 5.12's ``pip_install(..., constraints=...)``, or pip's own
``-c`` option on Slicer 5.10, whose ``pip_install`` takes only pip's arguments).

What a run needs depends on its options (:func:`needed_modules`: the dense registration's
pre-alignment imports ConvexAdam), and an installed package can be there but too old
(:func:`dependency_problems` checks the versions of ``requirements.txt`` and the torch that the
installed MONAI asks for), each problem said with its fix.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

try:  # Slicer ships packaging (slicer.packaging imports it); pip's vendored copy otherwise
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version
except ImportError:  # pragma: no cover - depends on the Slicer build
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]  # the same classes, vendored
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[assignment]  # the same classes, vendored

# A client of a MedDIFT server ("Compute on: server") needs only the HTTP client: no torch, no model.
SERVER_MODULES = ("httpx",)
SERVER_REQUIREMENTS = ["httpx>=0.27"]  # as pyproject.toml's "server" extra
# Distributions Slicer ships (or that the PyTorch extension chose for this machine); replacing them breaks it.
PROTECTED = {"simpleitk", "numpy", "vtk", "scipy", "torch", "pydicom", "pillow"}


def _name(line: str) -> str:
    for sep in "<>=!~ [;":
        line = line.split(sep, 1)[0]
    return line.strip().lower()


def requirements(path) -> list[str]:
    """Requirement lines of a requirements file, without comments and protected packages."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and _name(line) not in PROTECTED:
            out.append(line)
    return out


def installed_pins(names=PROTECTED, version=importlib.metadata.version) -> list[str]:
    """``name==version`` for each protected distribution installed in this Python (sorted)."""
    pins = []
    for name in sorted(names):
        try:
            pins.append(f"{name}=={version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def write_constraints(path, names=PROTECTED) -> Path:
    """A pip constraints file pinning what Slicer already has; pip then refuses to upgrade it."""
    path = Path(path)
    path.write_text(
        "# Slicer's own packages: never replaced by MedDIFT's dependencies\n"
        + "".join(pin + "\n" for pin in installed_pins(names))
    )
    return path


def missing_modules(modules=("torch", "monai", "einops", "huggingface_hub")) -> list[str]:
    """Import names not installed in this Python."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


BASE_MODULES = {"torch": "torch", "monai": "monai", "einops": "einops", "huggingface_hub": "huggingface_hub"}
"""Import name -> distribution of what every local run imports."""
DENSE_MODULES = {"convexAdam": "convexadam"}
"""... and what the dense registration adds (its rigid pre-alignment uses ConvexAdam's least-trimmed fit)."""
TORCH_FIX = (
    "update torch in the PyTorch Utils module (uninstall it there, then install a version {spec}) and restart Slicer"
)


def needed_modules(dense: bool = False) -> dict:
    """Import name -> distribution of what a run imports.

    Args:
        dense: the run registers the scans densely (points from the dense map, a transform or a
            warped volume).
    """
    return {**BASE_MODULES, **(DENSE_MODULES if dense else {})}


def _version_or_none(name: str, version: Callable[[str], str]) -> str | None:
    try:
        return version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _satisfies(installed: str, req: Requirement) -> bool:
    try:
        return req.specifier.contains(Version(installed), prereleases=True)
    except InvalidVersion:  # a local build with an odd version: do not refuse what cannot be compared
        return True


def dependency_problems(requirements_path, dense: bool = False, find_spec=None, version=None, requires=None) -> list:
    """What stops a run, each with its fix: missing modules, versions outside ``requirements.txt``,
    and a torch older than the installed MONAI needs. Empty: ready.

    Args:
        requirements_path: the module's ``Resources/requirements.txt``.
        dense: the run uses the dense registration (see :func:`needed_modules`).
        find_spec, version, requires: ``importlib``'s look-ups by default.
    """
    find_spec = find_spec or importlib.util.find_spec  # looked up now: tests hide a module or a version
    version, requires = version or importlib.metadata.version, requires or importlib.metadata.requires
    modules = needed_modules(dense)
    problems = [f"{dist} is not installed" for mod, dist in modules.items() if find_spec(mod) is None]
    wanted = {_name(line): Requirement(line) for line in requirements(requirements_path)}
    for dist in modules.values():
        have, req = _version_or_none(dist, version), wanted.get(dist)
        if have is not None and req is not None and not _satisfies(have, req):
            problems.append(f"{dist} {have} is installed but MedDIFT needs {req}: it is replaced on install")
    monai, torch = _version_or_none("monai", version), _version_or_none("torch", version)
    if monai and torch:
        for line in requires("monai") or []:
            req = Requirement(line)
            if req.name.lower() == "torch" and not req.marker and not _satisfies(torch.split("+")[0], req):
                problems.append(
                    f"torch {torch} is too old for MONAI {monai} (it needs torch{req.specifier}): "
                    + TORCH_FIX.format(spec=str(req.specifier))
                )
    return problems


def pip_install_constrained(pip_install: Callable, reqs: list, constraints) -> None:
    """``pip_install`` of ``reqs`` under a constraints file, on any Slicer since 5.10.

    Args:
        pip_install: ``slicer.util.pip_install``: Slicer 5.12's takes ``constraints=``; 5.10's takes
            only pip's arguments, where pip's own ``-c FILE`` does the same.
        reqs: requirement lines.
        constraints: the constraints file (see :func:`write_constraints`).
    """
    params = inspect.signature(pip_install).parameters
    if "constraints" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        pip_install(list(reqs), constraints=str(constraints))
    else:
        pip_install(list(reqs) + ["-c", str(constraints)])


def worker_python(which: Callable = shutil.which, executable: str = sys.executable) -> str:
    """The interpreter of the worker process: Slicer's ``PythonSlicer``, never the Slicer binary.

    Inside Slicer ``sys.executable`` can be the application itself (``SlicerApp-real``): started
    with ``-m``, that opens a second Slicer instead of a Python. So ``PythonSlicer`` is looked up on
    the PATH, then beside the application (``bin/`` of the install, ``Contents/bin`` on macOS);
    ``sys.executable`` is used only when it is a Python interpreter itself (outside Slicer).

    Args:
        which: ``shutil.which``.
        executable: ``sys.executable``.
    """
    found = which("PythonSlicer")
    if found:
        return found
    here = Path(executable).resolve().parent
    for folder in (here, here / "bin", here.parent / "bin"):
        for name in ("PythonSlicer", "PythonSlicer.exe"):
            if (folder / name).is_file() and os.access(folder / name, os.X_OK):
                return str(folder / name)
    if Path(executable).name.lower().startswith("python"):
        return executable
    raise RuntimeError(
        f"cannot find Slicer's PythonSlicer (next to {executable}); the worker must not be started "
        "with the Slicer application itself: reinstall Slicer"
    )
