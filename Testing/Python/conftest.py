"""Shared fixtures: the real data in ../shared when present, temp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MEDDIFT_SHARED", REPO.parent / "shared")) / "data"


def shared_file(relpath: str) -> Path:
    """Path of a file in ../shared/data, or skip the test saying why."""
    path = SHARED / relpath
    if not path.exists():
        pytest.skip(f"real data not available: {path} (../shared is absent in a fresh clone)")
    return path


@pytest.fixture
def shared():
    return shared_file
