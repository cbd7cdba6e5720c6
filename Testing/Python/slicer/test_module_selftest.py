"""``MedDIFTTest.runTest()``, the module's own self-test, run as Slicer runs it.

From the source checkout (the module folder as an additional module path) and
from an installed tree made by the extension's real CMake files with Slicer's
and CTK's own macros (``Testing/SlicerStandIn/cmake``): configure, build,
install, then load ``MedDIFT.py`` from the install prefix in a fresh Python
whose path holds only the headless Slicer, so that every file the module and
its worker import must have been installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
STANDIN = REPO / "Testing" / "SlicerStandIn"

pytestmark = pytest.mark.slow


def test_selftest_from_the_source_checkout(slicer_app):
    import slicer_standin

    slicer_standin.loadModule(str(REPO / "MedDIFT" / "MedDIFT.py"))
    slicer_app.selfTests["MedDIFT"](msec=0)  # raises on failure (unittest assertions)
    assert slicer_app.mrmlScene.GetFirstNodeByName("MedDIFT matched") is not None


def _cmake_install(tmp_path: Path) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed: the installed-tree self-test needs it")
    build, prefix = tmp_path / "build", tmp_path / "install"
    configure = subprocess.run(
        [
            cmake,
            "-S",
            str(REPO),
            "-B",
            str(build),
            f"-DSlicer_DIR={STANDIN / 'cmake'}",
            f"-DPYTHON_EXECUTABLE={sys.executable}",
        ],
        capture_output=True,
        text=True,
    )
    if configure.returncode != 0 and "CMAKE_CXX_COMPILER" in configure.stderr + configure.stdout:
        pytest.skip("no C++ compiler for CMake's project() check on this machine")
    assert configure.returncode == 0, configure.stdout + configure.stderr
    for step in ([cmake, "--build", str(build)], [cmake, "--install", str(build), "--prefix", str(prefix)]):
        r = subprocess.run(step, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    return prefix / "lib" / "Slicer-5.12" / "qt-scripted-modules"


def test_selftest_from_a_cmake_installed_tree(tmp_path):
    modules = _cmake_install(tmp_path)
    assert (modules / "MedDIFT.py").is_file() and (modules / "Resources" / "UI" / "MedDIFT.ui").is_file()
    code = (  # noqa: UP031 (a Python source template: %r quotes the paths)
        # the checkout's own folders leave sys.path; the environment's site-packages stays even when the
        # virtual environment lives inside the checkout (.venv, as `make test` and CI make it)
        "import sys; sys.path[:] = [%r] + [p for p in sys.path if not p.startswith(%r) or p.startswith(sys.prefix)]\n"
        "import slicer_standin; slicer = slicer_standin.start(testing=True)\n"
        "slicer_standin.loadModule(%r)\n"
        "slicer.selfTests['MedDIFT'](msec=0)\n"
        "import MedDIFTLib, MedDIFTSceneLib; print('ENGINE', MedDIFTLib.__file__, MedDIFTSceneLib.__file__)\n"
        "slicer.app.moduleManager().unloadModules()\n"
    ) % (str(STANDIN), str(REPO), str(modules / "MedDIFT.py"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDDIFT_SHARED")}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    engine_line = next(line for line in r.stdout.splitlines() if line.startswith("ENGINE"))
    assert all(Path(p).is_relative_to(modules) for p in engine_line.split()[1:]), engine_line
