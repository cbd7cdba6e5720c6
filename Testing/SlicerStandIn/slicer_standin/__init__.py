"""Start a headless "Slicer" in this Python process: Slicer's own Python files over real MRML.

``start()`` does what Slicer's application does before it runs a scripted
module: it imports the ``slicer`` package (Slicer's own ``__init__.py``, which
loads the MRML classes of slicer-core listed in ``slicer/kits.py``), creates
the scene and the application object and puts ``slicer.app``,
``slicer.mrmlScene`` and the MRML widget classes into the ``slicer`` module.
``loadModule(path)`` then plays qSlicerScriptedLoadableModuleFactory: it
imports the module file, creates its ``parent`` (title, categories, path...),
registers ``slicer.modules.<name>`` and builds the widget on demand.

Use::

    import slicer_standin
    slicer_standin.start(testing=True)
    module = slicer_standin.loadModule("MedDIFT/MedDIFT.py")
    widget = module.widgetRepresentation().self()
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def installClasses():
    """Put the Qt-wrapped Slicer classes into ``slicer`` (in Slicer they are there as soon as it is imported)."""
    if "slicer" not in sys.modules:  # ahead of site-packages, where slicer-core puts its own "slicer" package
        if HERE in sys.path:
            sys.path.remove(HERE)
        sys.path.insert(0, HERE)
    import slicer

    from . import mrml_widgets

    for name in (
        "qSlicerWidget",
        "qMRMLWidget",
        "qMRMLNodeComboBox",
        "qSlicerMarkupsPlaceWidget",
        "qMRMLSliderWidget",
        "qMRMLSpinBox",
        "qMRMLRangeWidget",
        "qMRMLScreenShotDialog",
        "qMRMLUtils",
    ):
        setattr(slicer, name, getattr(mrml_widgets, name))
    from .modules import qSlicerScriptedLoadableModule, qSlicerScriptedLoadableModuleWidget

    slicer.qSlicerScriptedLoadableModule = qSlicerScriptedLoadableModule
    slicer.qSlicerScriptedLoadableModuleWidget = qSlicerScriptedLoadableModuleWidget
    return slicer


def start(testing: bool = True):
    """Create (or reset) the application; returns ``slicer``. Safe to call again: a fresh app and scene."""
    slicer = installClasses()
    import qt

    from .app import qSlicerApplication

    old = getattr(slicer, "app", None)
    if old is not None:
        old.moduleManager().unloadModules()
    qt._core._activeTimers.clear()
    qt.QSettings.clearAll()
    qt.clearDialogAnswers()
    del qt.slotErrors[:]
    for attr in [a for a in vars(slicer.modules)]:
        if not attr.startswith("__"):
            delattr(slicer.modules, attr)
    scene = slicer.vtkMRMLScene()
    # What Slicer's Markups module logic registers at start-up (vtkSlicerMarkupsLogic::RegisterNodes):
    # the .mrk.json storage node, so that point lists are saved with the scene (.mrml files, .mrb).
    scene.RegisterNodeClass(slicer.vtkMRMLMarkupsJsonStorageNode())
    slicer.app = qSlicerApplication(scene, testing=testing)
    slicer.mrmlScene = scene
    slicer.selfTests = {}
    import slicer.i18n  # noqa: F401  (Slicer's application imports these at start-up)
    import slicer.util  # noqa: F401

    return slicer


def loadModule(path: str):
    """Load a scripted module file as Slicer's module factory does; returns its ``parent`` object."""
    from .modules import load_scripted_module

    return load_scripted_module(os.path.abspath(path))


def runEventLoop(until, timeout: float = 60.0, interval: float = 0.02) -> bool:
    """Process events (timers) until ``until()`` is true or ``timeout`` s pass; returns ``until()``."""
    import time

    import qt

    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            return bool(until())
        qt.processEvents()
        time.sleep(interval)
    return True
