"""Qt stand-ins, continued: spin boxes, sliders, progress bars, text edits, dialogs, small value types.

Same rules as ``_widgets.py``: signals and properties from the Qt 5 headers;
a spin box clamps to its range and a double spin box rounds to ``decimals``,
as Qt does before it emits ``valueChanged``.
"""

from __future__ import annotations

from ._core import Prop, QObject, Signal
from ._widgets import QFrame, Qt, QWidget


class QAbstractSpinBox(QWidget):
    editingFinished = Signal("editingFinished()")
    readOnly = Prop(False)
    keyboardTracking = Prop(True)
    prefix = Prop("")
    suffix = Prop("")

    def setRange(self, lo, hi):
        self.minimum, self.maximum = lo, hi


class QSpinBox(QAbstractSpinBox):
    valueChanged = Signal("valueChanged(int)", "valueChanged(QString)")
    minimum = Prop(0)
    maximum = Prop(99)
    singleStep = Prop(1)
    value = Prop(0, notify="valueChanged(int)", convert=lambda o, v: int(min(max(int(v), o.minimum), o.maximum)))


class QDoubleSpinBox(QAbstractSpinBox):
    valueChanged = Signal("valueChanged(double)", "valueChanged(QString)")
    minimum = Prop(0.0)
    maximum = Prop(99.99)
    singleStep = Prop(1.0)
    decimals = Prop(2)
    value = Prop(
        0.0,
        notify="valueChanged(double)",
        convert=lambda o, v: round(float(min(max(float(v), o.minimum), o.maximum)), o.decimals),
    )


class QSlider(QWidget):
    valueChanged = Signal("valueChanged(int)")
    minimum = Prop(0)
    maximum = Prop(99)
    orientation = Prop(Qt.Vertical)
    value = Prop(0, notify="valueChanged(int)", convert=lambda o, v: int(min(max(int(v), o.minimum), o.maximum)))

    def setRange(self, lo, hi):
        self.minimum, self.maximum = lo, hi


class QProgressBar(QWidget):
    valueChanged = Signal("valueChanged(int)")
    minimum = Prop(0)
    maximum = Prop(100)
    value = Prop(-1, notify="valueChanged(int)")
    textVisible = Prop(True)
    format = Prop("%p%")

    def setRange(self, lo, hi):
        self.minimum, self.maximum = lo, hi

    def reset(self):
        self.value = -1


class QPlainTextEdit(QFrame):
    textChanged = Signal("textChanged()")
    readOnly = Prop(False)
    plainText = Prop("", notify="textChanged()")
    placeholderText = Prop("")
    maximumBlockCount = Prop(0)

    def appendPlainText(self, text):
        self.plainText = (self.plainText + "\n" if self.plainText else "") + str(text)

    def toPlainText(self):
        return self.plainText

    def clear(self):
        self.plainText = ""


class QTextEdit(QPlainTextEdit):
    html = Prop("")

    def append(self, text):
        self.appendPlainText(text)


class QGroupBox(QWidget):
    title = Prop("")
    checkable = Prop(False)
    checked = Prop(True)
    toggled = Signal("toggled(bool)")


class QDialog(QWidget):
    accepted = Signal("accepted()")
    rejected = Signal("rejected()")
    finished = Signal("finished(int)")
    Rejected, Accepted = 0, 1
    modal = Prop(False)

    def exec_(self):
        """No person can answer a dialog here: a test that opens one unexpectedly fails."""
        raise AssertionError(f"{type(self).__name__} opened modally in a headless test")

    exec = exec_

    def accept(self):
        self.emit("accepted()")

    def reject(self):
        self.emit("rejected()")


class QSizePolicy:
    Fixed, Minimum, Maximum, Preferred, MinimumExpanding, Expanding, Ignored = 0, 1, 4, 5, 3, 7, 13

    def __init__(self, h=5, v=5):
        self.policy = (h, v)


class QIcon:
    def __init__(self, path=""):
        self.path = str(path)

    def isNull(self):
        return not self.path


class QColor:
    def __init__(self, *args):
        self.args = args

    def name(self):
        return "#000000"


class QUrl:
    TolerantMode, StrictMode = 0, 1

    def __init__(self, url="", mode=0):
        self.url = url


class QAction(QObject):
    triggered = Signal("triggered(bool)", "triggered()")
    text = Prop("")
    statusTip = Prop("")
    checkable = Prop(False)

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text


class QMenu(QWidget):
    def addAction(self, action):
        action.setParent(self)
        return action
