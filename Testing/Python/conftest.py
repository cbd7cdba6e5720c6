"""Shared fixtures: the real data in ../shared when present, temp folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MEDDIFT_SHARED", REPO.parent / "shared")) / "data"

# Tests live in folders that mirror the package (data/, features/, ...); the helpers beside this file
# (tiny_maisi, fake_hub, ...) import from any of them.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

# The Slicer module's folder is on sys.path inside Slicer; the same here, so that its
# Qt-free scene code imports as it does there (``import MedDIFTSceneLib``).
if str(REPO / "MedDIFT") not in sys.path:
    sys.path.insert(0, str(REPO / "MedDIFT"))

# The headless Slicer (Slicer's own Python files over slicer-core's MRML, Qt stand-ins): first on
# sys.path so that ``import slicer`` anywhere in the tests is the same package the module sees.
if str(REPO / "Testing" / "SlicerStandIn") not in sys.path:
    sys.path.insert(0, str(REPO / "Testing" / "SlicerStandIn"))


def shared_file(relpath: str) -> Path:
    """Path of a file in ../shared/data, or skip the test saying why."""
    path = SHARED / relpath
    if not path.exists():
        pytest.skip(f"real data not available: {path} (../shared is absent in a fresh clone)")
    return path


@pytest.fixture
def shared():
    return shared_file


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No MAISI weights and a private feature cache: the weight-free backbone, whatever this machine has."""
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "no_weights"))
    monkeypatch.setenv("MEDDIFT_CACHE_DIR", str(tmp_path / "cache"))
