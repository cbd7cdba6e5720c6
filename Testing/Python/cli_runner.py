"""The one way the tests start a real ``meddift`` command: ``python -m MedDIFTLib.cli`` from this
checkout, in a subprocess, as a user with no MAISI weights (the weight-free MIND-SSC backbone, whatever
this machine has installed), one thread (the suite runs beside other work), and its own feature cache.

A test that needs a different environment passes the variables to change; nothing else differs
between the tests' subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli_env(folder, **changes) -> dict:
    """The subprocess environment: this checkout first on ``PYTHONPATH``, one thread, no MAISI weights
    and a feature cache under ``folder`` (``MEDDIFT_WEIGHTS_DIR``/``MEDDIFT_CACHE_DIR`` unless ``changes``
    sets them; a value of None removes a variable)."""
    folder = Path(folder)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        OMP_NUM_THREADS="1",
        MEDDIFT_WEIGHTS_DIR=str(folder / "no_weights"),
        MEDDIFT_CACHE_DIR=str(folder / "cache"),
    )
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def meddift_cmd(*args) -> list:
    """The command line of ``meddift ARGS`` run from this checkout."""
    return [sys.executable, "-m", "MedDIFTLib.cli", *map(str, args)]


def run_meddift(*args, folder, cwd=None, timeout: float = 300, **changes) -> subprocess.CompletedProcess:
    """Run ``meddift ARGS`` to its end in ``cwd`` (default ``folder``) with :func:`cli_env`; text output."""
    return subprocess.run(
        meddift_cmd(*args),
        capture_output=True,
        text=True,
        env=cli_env(folder, **changes),
        cwd=cwd or folder,
        timeout=timeout,
    )


def start_meddift(*args, folder, cwd=None, **changes) -> subprocess.Popen:
    """Start ``meddift ARGS`` in ``cwd`` (default ``folder``) with :func:`cli_env`, stdout and stderr piped."""
    return subprocess.Popen(
        meddift_cmd(*args),
        env=cli_env(folder, **changes),
        cwd=cwd or folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
