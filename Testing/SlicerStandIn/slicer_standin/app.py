"""``slicer.app`` stand-in: the application object over a real ``vtkMRMLScene``.

Slicer's C++ application (qSlicerApplication) owns the scene, the layout
manager with its slice views, the module manager and the settings, and puts
``slicer.app`` and ``slicer.mrmlScene`` into the ``slicer`` module at start-up.
Here the scene, the colour nodes, the layout node and each view's slice
logic, slice node and composite node are slicer-core's real MRML objects; only
what draws (views, cursors, the main window) is absent: ``mainWindow()`` is
None, as under ``Slicer --no-main-window``.
"""

from __future__ import annotations

import os

import qt
from qt import QObject, Signal

SLICE_VIEWS = ("Red", "Yellow", "Green")


class qMRMLSliceWidget:
    """One slice view: its real vtkMRMLSliceLogic (slice node, composite node) and nothing drawn."""

    def __init__(self, logic):
        self._logic = logic

    def sliceLogic(self):
        return self._logic

    def mrmlSliceNode(self):
        return self._logic.GetSliceNode()

    def mrmlSliceCompositeNode(self):
        return self._logic.GetSliceCompositeNode()

    def sliceView(self):
        return self

    def forceRender(self):
        pass

    def scheduleRender(self):
        pass


class qSlicerLayoutManager(QObject):
    layoutChanged = Signal("layoutChanged(int)")

    def __init__(self, scene):
        super().__init__()
        import slicer

        self._scene = scene
        # as qSlicerCoreApplication and qSlicerLayoutManager do: orientation presets, then the layout logic
        # (layout node with Slicer's standard layouts, the view nodes), then one slice logic per slice view
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
        self._layoutLogic = slicer.vtkMRMLLayoutLogic()
        self._layoutLogic.SetMRMLScene(scene)
        self._layout = slicer.vtkMRMLLayoutNode.SlicerLayoutInitialView
        self._widgets = {}
        for name in SLICE_VIEWS:
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLScene(scene)
            logic.SetSliceNode(scene.GetNodeByID("vtkMRMLSliceNode" + name))
            self._widgets[name] = qMRMLSliceWidget(logic)

    @property
    def layout(self):
        return self._layout

    @layout.setter
    def layout(self, value):
        self.setLayout(value)

    def setLayout(self, value):
        self._layout = int(value)
        self._layoutLogic.GetLayoutNode().SetViewArrangement(self._layout)
        self.emit("layoutChanged(int)", self._layout)

    def layoutLogic(self):
        return self._layoutLogic

    def sliceWidget(self, name):
        return self._widgets.get(name)

    def sliceViewNames(self):
        return list(self._widgets)

    def threeDWidget(self, index):
        return None

    def threeDViewCount(self):
        return 0


class _FactoryManager:
    def __init__(self, manager):
        self._manager = manager

    def loadedModuleNames(self):
        return list(self._manager._modules)


class qSlicerModuleManager(QObject):
    moduleAboutToBeUnloaded = Signal("moduleAboutToBeUnloaded(QString)")
    moduleLoaded = Signal("moduleLoaded(QString)")

    def __init__(self):
        super().__init__()
        self._modules = {}

    def module(self, name):
        return self._modules.get(name)

    def factoryManager(self):
        return _FactoryManager(self)

    def unloadModules(self):
        """What Slicer does on exit: every module hears moduleAboutToBeUnloaded (widgets run cleanup())."""
        for name in list(self._modules):
            self.emit("moduleAboutToBeUnloaded(QString)", name)
        self._modules.clear()


class _CommandOptions:
    runPythonAndExit = False
    noMainWindow = True
    testingEnabled = False


class qSlicerApplication(QObject):
    def __init__(self, scene, testing=False):
        super().__init__()
        import slicer

        self._scene = scene
        self._testing = testing
        self._cursorDepth = 0
        self.exitCode = None
        self.applicationName = "Slicer"
        self.applicationVersion = "5.12.3"
        self.majorVersion, self.minorVersion = 5, 12
        self.documentationBaseUrl = "https://slicer.readthedocs.io/en/latest"
        self.slicerHome = ""
        self._options = _CommandOptions()
        self._colorLogic = slicer.vtkMRMLColorLogic()  # default colour tables, as Slicer's Colors module adds
        self._colorLogic.SetMRMLScene(scene)
        self._appLogic = slicer.vtkSlicerApplicationLogic()  # selection and interaction nodes, scene bundles
        self._appLogic.SetMRMLScene(scene)
        self._layoutManager = qSlicerLayoutManager(scene)
        self._moduleManager = qSlicerModuleManager()

    # --- what modules call ----------------------------------------------------------
    def mrmlScene(self):
        return self._scene

    def layoutManager(self):
        return self._layoutManager

    def moduleManager(self):
        return self._moduleManager

    def testingEnabled(self):
        return self._testing

    def setTestingEnabled(self, on):
        self._testing = bool(on)

    def commandOptions(self):
        return self._options

    def processEvents(self, *args):
        qt.processEvents()

    def setOverrideCursor(self, cursor):
        self._cursorDepth += 1

    def restoreOverrideCursor(self):
        self._cursorDepth -= 1

    def overrideCursorDepth(self):
        """Stand-in only: cursors set and not restored (a leak a test can see)."""
        return self._cursorDepth

    def translate(self, context, text):
        return text

    def settings(self):
        return qt.QSettings()

    def userSettings(self):
        return qt.QSettings()

    def startupEnvironment(self):
        return qt.QProcessEnvironment(os.environ)

    def moduleDocumentationUrl(self, name):
        return f"{self.documentationBaseUrl}/user_guide/modules/{name.lower()}.html"

    def exit(self, code=0):
        self.exitCode = code

    def restart(self):
        raise RuntimeError("the headless stand-in cannot restart Slicer")

    def pythonConsole(self):
        return None

    def keyboardModifiers(self):
        return qt.Qt.NoModifier

    def applicationLogic(self):
        return self._appLogic

    def topLevelWidgets(self):
        return []
