"""Fixtures for the Slicer module's tests: a fresh headless Slicer (Testing/SlicerStandIn) per test.

``slicer_app`` starts the stand-in application over a new real MRML scene and,
at the end, unloads the modules (their widgets run ``cleanup()``, as on
Slicer's exit) and fails the test if a Qt slot raised: PythonQt would only
have printed that error, and Slicer would have gone on with a half-done
action.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Slicer's Qt-wrapped classes (qMRMLNodeComboBox, ...) exist as soon as ``slicer`` is imported in Slicer;
# parameterNodeWrapper names them at import time, so they are put in place before any test module loads.
import slicer_standin  # noqa: E402

slicer_standin.installClasses()

REPO = Path(__file__).resolve().parents[3]  # also what ``from conftest import REPO`` finds from this folder
MODULE_FILE = REPO / "MedDIFT" / "MedDIFT.py"


@pytest.fixture
def slicer_app():
    pytest.importorskip("slicer_core", reason="slicer-core (Slicer's MRML library) is not installed")
    import qt
    import slicer_standin

    slicer = slicer_standin.start(testing=True)
    yield slicer
    slicer.app.moduleManager().unloadModules()
    errors = list(qt.slotErrors)
    del qt.slotErrors[:]
    assert not errors, "a Qt slot raised (PythonQt prints this and goes on):\n" + "\n".join(errors)


@pytest.fixture
def module_widget(slicer_app):
    """The MedDIFT module loaded as Slicer loads it, its panel built and entered; yields the Python widget."""
    import slicer_standin

    module = slicer_standin.loadModule(str(MODULE_FILE))
    representation = module.widgetRepresentation()
    representation.enter()
    yield representation.self()
    if representation.isEntered:
        representation.exit()


@pytest.fixture
def errors(monkeypatch):
    """Every error the panel shows (in testing mode Slicer's errorDisplay only logs it)."""
    import slicer

    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, *a, **k: shown.append(text))
    return shown


@pytest.fixture
def real_dialogs(monkeypatch):
    """Slicer as a reader runs it: questions and error boxes are modal dialogs (testing mode off, a main
    window for the error boxes to sit on)."""
    import qt

    import slicer

    slicer.app.setTestingEnabled(False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda: qt.QMainWindow())
    yield
    slicer.app.setTestingEnabled(True)
