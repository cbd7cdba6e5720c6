"""How Slicer loads a scripted module, played in Python (qSlicerScriptedLoadableModule*.cxx).

Slicer's factory adds the module's folder to ``sys.path``, imports the file
under its own name, makes a ``parent`` object (the C++ module, whose title,
categories, help text and path the Python class fills in), instantiates
``<Name>(parent)`` and registers ``slicer.modules.<name>``. The widget is
built the first time the module is shown: a ``qSlicerScriptedLoadableModuleWidget``
(a qMRMLWidget with a vertical layout) is the ``parent`` of ``<Name>Widget``,
whose ``setup()`` runs once; ``enter()``/``exit()`` run when the module is
selected or left. ``slicer.modules.<Name>Widget`` is set, as Slicer does.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import qt
from qt import Prop

from .mrml_widgets import qMRMLWidget


class qSlicerScriptedLoadableModuleWidget(qMRMLWidget):
    isEntered = Prop(False)

    def __init__(self, module):
        super().__init__()
        self._module = module
        self._self = None
        self.setLayout(qt.QVBoxLayout())

    def self(self):
        return self._self

    def setup(self):
        import slicer

        cls = getattr(sys.modules[self._module.name], self._module.name + "Widget")
        self.setMRMLScene(slicer.mrmlScene)
        self._self = cls(self)
        self._self.setup()
        setattr(slicer.modules, self._module.name + "Widget", self._self)

    def enter(self):
        self.isEntered = True
        if hasattr(self._self, "enter"):
            self._self.enter()

    def exit(self):
        if hasattr(self._self, "exit"):
            self._self.exit()
        self.isEntered = False

    def reload(self):
        """slicer.util.reloadScriptedModule calls this after re-importing the file."""
        self.setup()


class qSlicerScriptedLoadableModule(qt.QObject):
    def __init__(self, path):
        super().__init__()
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.title = ""
        self.categories = []
        self.dependencies = []
        self.contributors = []
        self.helpText = ""
        self.acknowledgementText = ""
        self.icon = None
        self.hidden = False
        self._widget = None

    def widgetRepresentation(self):
        if self._widget is None:
            self._widget = qSlicerScriptedLoadableModuleWidget(self)
            self._widget.setup()
        return self._widget

    def createNewWidgetRepresentation(self):
        w = qSlicerScriptedLoadableModuleWidget(self)
        w.setup()
        return w

    def logic(self):
        return None


def load_scripted_module(path: str):
    import slicer

    module_dir = os.path.dirname(path)
    if module_dir not in sys.path:
        sys.path.insert(0, module_dir)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    py_module = importlib.util.module_from_spec(spec)
    sys.modules[name] = py_module
    spec.loader.exec_module(py_module)
    parent = qSlicerScriptedLoadableModule(path)
    instance = getattr(py_module, name)(parent)
    setattr(slicer.modules, name.lower(), parent)
    setattr(slicer.modules, name + "Instance", instance)
    setattr(slicer.moduleNames, name, name)
    slicer.app.moduleManager()._modules[name] = parent
    slicer.app.moduleManager().emit("moduleLoaded(QString)", name)
    return parent
