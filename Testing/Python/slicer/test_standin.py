"""The headless Slicer itself: does it behave as Slicer, Qt and PythonQt do where the module relies on it?

Each test pins one behaviour the widget tests depend on; if the stand-in
drifted from Qt/Slicer there, a widget test could pass for the wrong reason.
"""

# No "from __future__ import annotations": parameterNodeWrapper reads the class annotations at run time.
from typing import Annotated

import pytest
import qt  # noqa: F401  (Testing/SlicerStandIn, put on sys.path by conftest)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

import slicer


def test_slicer_package_is_slicers_own_files_over_real_mrml(slicer_app):
    import slicer_core

    import slicer

    assert slicer.vtkMRMLScene is slicer_core.vtkMRMLScene
    assert slicer.util.__file__.replace("\\", "/").endswith("Testing/SlicerStandIn/slicer/util.py")
    assert isinstance(slicer.mrmlScene, slicer_core.vtkMRMLScene)
    assert slicer.mrmlScene is slicer.app.mrmlScene()
    assert slicer.util.mainWindow() is None  # as under --no-main-window


def test_slot_gets_as_many_arguments_as_it_takes_and_errors_are_recorded(slicer_app):
    import qt

    b = qt.QPushButton("x")
    got = []
    b.connect("clicked(bool)", lambda: got.append("none"))
    b.connect("clicked(bool)", lambda on: got.append(on))
    b.clicked.connect(lambda *a: got.append(a))
    b.click()
    assert got == ["none", False, (False,)]
    with pytest.raises(ValueError, match="no signal"):
        b.connect("clickedd(bool)", print)
    b.connect("clicked()", lambda: 1 / 0)
    b.click()
    assert any("ZeroDivisionError" in e for e in qt.slotErrors)
    del qt.slotErrors[:]
    b.enabled = False
    got.clear()
    b.click()
    assert got == []  # a disabled button does not click


def test_combo_box_emits_as_qt_does(slicer_app):
    import qt

    c = qt.QComboBox()
    seen = []
    c.connect("currentIndexChanged(int)", seen.append)
    c.addItem("a")
    c.addItem("b")
    assert (c.currentIndex, c.currentText, seen) == (0, "a", [0])
    c.setCurrentIndex(1)
    c.clear()
    assert seen == [0, 1, -1] and c.currentText == "" and c.count == 0


def test_double_spin_box_rounds_to_decimals_and_clamps(slicer_app):
    import qt

    s = qt.QDoubleSpinBox()
    s.decimals, s.maximum = 1, 50.0
    s.value = 12.34
    assert s.value == 12.3
    s.value = 99
    assert s.value == 50.0


def test_ui_loader_refuses_unknown_properties_and_classes(slicer_app, tmp_path):
    import qt

    import slicer

    ok = (
        '<ui version="4.0"><widget class="qMRMLWidget" name="W"><layout class="QVBoxLayout" name="l">'
        '<item><widget class="QPushButton" name="b"><property name="text"><string>Go</string></property>'
        '<property name="SlicerParameterName" stdset="0"><string>p</string></property></widget></item>'
        "</layout></widget></ui>"
    )
    (tmp_path / "ok.ui").write_text(ok)
    w = slicer.util.loadUI(str(tmp_path / "ok.ui"))
    ui = slicer.util.childWidgetVariables(w)
    assert ui.b.text == "Go" and ui.b.property("SlicerParameterName") == "p" and ui.b.parent() is w
    (tmp_path / "bad.ui").write_text(ok.replace('name="text"', 'name="txet"'))
    with pytest.raises(RuntimeError, match="no property 'txet'"):
        slicer.util.loadUI(str(tmp_path / "bad.ui"))
    (tmp_path / "bad2.ui").write_text(ok.replace("QPushButton", "QPushButtn"))
    with pytest.raises(RuntimeError, match="QPushButtn"):
        slicer.util.loadUI(str(tmp_path / "bad2.ui"))
    assert isinstance(w, qt.QWidget)


def test_node_combo_box_follows_the_real_scene(slicer_app):
    import slicer

    scene = slicer.mrmlScene
    combo = slicer.qMRMLNodeComboBox()
    combo.nodeTypes = ["vtkMRMLScalarVolumeNode"]
    combo.noneEnabled = False
    changed = []
    combo.connect("currentNodeChanged(vtkMRMLNode*)", changed.append)
    combo.setMRMLScene(scene)
    assert combo.currentNode() is None
    a = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "a")
    assert combo.currentNode() is a  # "None" not allowed: the first node is taken
    b = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "b")  # a child class
    scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "p")  # another type: not listed
    assert [n.GetName() for n in combo.nodes()] == ["a", "b"]
    combo.setCurrentNode(b)
    scene.RemoveNode(b)
    assert combo.currentNode() is a and [n.GetName() if n else None for n in changed] == ["a", "b", "a"]
    combo.noneEnabled = True
    scene.RemoveNode(a)
    assert combo.currentNode() is None


def test_parameter_node_wrapper_binds_both_ways(slicer_app):
    """Slicer's own parameterNodeWrapper over the stand-in widgets and a real vtkMRMLScriptedModuleNode."""

    @parameterNodeWrapper
    class P:
        volume: slicer.vtkMRMLScalarVolumeNode
        mode: Annotated[str, Choice(["a", "b"])] = "a"
        radius: Annotated[float, WithinRange(0.0, 10.0)] = 2.0

    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    p = P(node)
    gui = type("ui", (), {})()
    gui.volume = slicer.qMRMLNodeComboBox()
    gui.volume.setMRMLScene(slicer.mrmlScene)
    gui.mode, gui.radius = qt.QComboBox(), qt.QDoubleSpinBox()
    for name in ("volume", "mode", "radius"):
        getattr(gui, name).setProperty("SlicerParameterName", name)
    tag = p.connectGui(gui)
    gui.radius.value = 7.5
    gui.mode.currentIndex = 1
    assert (p.radius, p.mode) == (7.5, "b")
    v = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    p.volume = v
    assert gui.volume.currentNode() is v
    p.radius = 3.0
    assert gui.radius.value == 3.0 and node.GetParameter("radius") == "3.0"
    p.disconnectGui(tag)
    gui.radius.value = 1.0
    assert p.radius == 3.0


def test_timers_run_only_when_events_are_processed(slicer_app):
    import qt
    import slicer_standin

    ticks = []
    t = qt.QTimer()
    t.setInterval(0)
    t.connect("timeout()", lambda: ticks.append(1))
    t.start()
    assert ticks == []
    slicer_app.app.processEvents()
    assert ticks == [1]
    t.stop()
    qt.QTimer.singleShot(0, lambda: ticks.append(2))
    assert slicer_standin.runEventLoop(lambda: 2 in ticks, timeout=2)
    slicer_app.app.processEvents()
    assert ticks == [1, 2]


def test_dialogs_need_a_prepared_answer(slicer_app):
    import qt

    with pytest.raises(AssertionError, match="without a prepared answer"):
        qt.QFileDialog.getSaveFileName(None, "Export", "x.csv", "*.csv")
    qt.answerNextDialog("QFileDialog.getSaveFileName", "/tmp/y.csv")
    assert qt.QFileDialog.getSaveFileName(None, "Export", "x.csv", "*.csv") == "/tmp/y.csv"


def test_a_collected_combo_box_leaves_no_observer_on_the_scene(slicer_app, monkeypatch):
    """A node combo box collected with its scene in one garbage cycle (as each test's panel is when the
    next test starts a new scene) must have removed its scene observers first, as qMRMLNodeComboBox's
    destructor does. Otherwise the scene, destroyed in the same collection, calls the half-cleared
    handler and VTK prints "TypeError: () missing 1 required positional argument: 'node'"."""
    import gc
    import sys

    from slicer_standin.mrml_widgets import qMRMLNodeComboBox

    import slicer

    printed = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: printed.append(f"{kind.__name__}: {value}"))
    gc.collect()
    for _ in range(3):
        scene = slicer.vtkMRMLScene()
        for i in range(3):
            scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"v{i}")
        combo = qMRMLNodeComboBox()
        combo.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        combo.setMRMLScene(scene)
        cycle = {"combo": combo, "scene": scene}
        cycle["self"] = cycle
        combo.cycle = cycle
        del combo, scene, cycle
        gc.collect()
    assert printed == []


def test_a_dialog_opened_from_a_timer_inside_another_is_seen_as_stacked(slicer_app):
    """Qt's modal dialog runs a nested event loop: a timer slot that opens a dialog runs inside it."""
    import qt

    timer = qt.QTimer()
    timer.setInterval(100)
    timer.connect("timeout()", lambda: qt.QMessageBox.warning(None, "again", "from the timer"))
    timer.start()
    for _ in range(1 + qt._views.DIALOG_TIMER_ROUNDS):  # the first box, then one per round of its loop
        qt.answerNextDialog("QMessageBox.warning", qt.QMessageBox.Ok)
    qt.QMessageBox.warning(None, "first", "opened by the test")
    timer.stop()
    assert qt.stackedDialogs == [("QMessageBox.warning", "from the timer")] * qt._views.DIALOG_TIMER_ROUNDS
    qt.clearDialogAnswers()
    assert not qt.stackedDialogs


def test_blocked_signals_and_inserted_widgets_behave_as_in_qt(slicer_app):
    import qt

    combo, seen = qt.QComboBox(), []
    combo.connect("currentIndexChanged(int)", seen.append)
    assert combo.blockSignals(True) is False
    combo.addItem("a")
    assert combo.blockSignals(False) is True and seen == [] and combo.currentIndex == 0
    combo.addItem("b")
    combo.currentIndex = 1
    assert seen == [1]
    box = qt.QWidget()
    layout = qt.QVBoxLayout(box)
    first, second, inserted = qt.QLabel("1"), qt.QLabel("2"), qt.QLabel("0")
    layout.addWidget(first)
    layout.addWidget(second)
    layout.insertWidget(layout.indexOf(second), inserted)
    assert [layout.itemAt(i) for i in range(layout.count())] == [first, inserted, second]
    assert inserted.parentWidget() is box
