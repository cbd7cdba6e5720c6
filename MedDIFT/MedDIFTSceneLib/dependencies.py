"""Python packages the engine needs inside Slicer, installed on first use (never at import).

torch comes from the PyTorch extension's utilities (the right CUDA or CPU
build for the machine); the rest from ``Resources/requirements.txt``.
Slicer's own packages are never replaced: requirement lines that name them
are dropped, and because a dependency (MONAI) may itself ask pip for a newer
numpy or torch, every install also gets a pip *constraints* file pinning each
protected package, and torch once present, to the version Slicer already has
(``slicer.util.pip_install(..., constraints=...)``, Slicer 5.12 and newer).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

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
    path.write_text("# Slicer's own packages: never replaced by MedDIFT's dependencies\n"
                    + "".join(pin + "\n" for pin in installed_pins(names)))
    return path


def missing_modules(modules=("torch", "monai", "einops", "huggingface_hub")) -> list[str]:
    """Import names not installed in this Python."""
    return [m for m in modules if importlib.util.find_spec(m) is None]
