"""Python packages the engine needs inside Slicer, installed on first use (never at import).

torch comes from the PyTorch extension's utilities (the right CUDA or CPU
build for the machine); the rest from ``Resources/requirements.txt``.
Slicer's own SimpleITK and numpy are never replaced: requirements that name
them are skipped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PROTECTED = {"simpleitk", "numpy", "vtk"}  # Slicer ships these; replacing them breaks Slicer


def requirements(path) -> list[str]:
    """Requirement lines of a requirements file, without comments and protected packages."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line
        for sep in "<>=!~ [;":
            name = name.split(sep, 1)[0]
        if name.strip().lower() in PROTECTED:
            continue
        out.append(line)
    return out


def missing_modules(modules=("torch", "monai", "einops", "huggingface_hub")) -> list[str]:
    """Import names not installed in this Python."""
    return [m for m in modules if importlib.util.find_spec(m) is None]
