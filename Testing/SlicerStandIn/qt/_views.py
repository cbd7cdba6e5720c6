"""QTableWidget and the static dialogs (file, input, message box).

Tables follow qtablewidget.h: ``rowCount``/``columnCount`` are properties,
``currentRow()`` is a method, selecting a cell emits ``currentCellChanged``
and ``itemSelectionChanged``.

Dialogs need a person. A test says in advance what the person answers with
``answerNextDialog(kind, value)``; a dialog that opens without a prepared
answer fails the test (``AssertionError``), which is how tests check that
nothing asks the user in testing mode.

A modal dialog in real Qt runs a nested event loop until the person answers:
timers keep firing inside it, so a slot that opens a dialog can be re-entered
(a 100 ms poll timer opening a second error box behind the first). Here each
dialog, while "open", fires every active timer ``DIALOG_TIMER_ROUNDS`` times (as
if the person took that long to read it), and a dialog opened while another is
open is recorded in ``stackedDialogs`` (and answered at once), so tests see the
same re-entrancy.
"""

from __future__ import annotations

from . import _core
from ._core import Prop, QObject, Signal
from ._inputs import QDialog
from ._widgets import QFrame, Qt, QWidget

_answers: list[tuple[str, object]] = []
asked: list[tuple[str, str]] = []  # (kind, text) of every dialog shown, for tests to read
stackedDialogs: list[tuple[str, str]] = []  # dialogs opened while another one was still open
DIALOG_TIMER_ROUNDS = 3
_open: list[str] = []


def answerNextDialog(kind: str, value) -> None:
    """Queue what the user will answer to the next dialog of this kind (e.g. "QFileDialog.getSaveFileName")."""
    _answers.append((kind, value))


def clearDialogAnswers() -> None:
    _answers.clear()
    asked.clear()
    stackedDialogs.clear()
    _open.clear()


def _spin() -> None:
    """The nested event loop of an open modal dialog: every active timer fires, as time passes."""
    for _ in range(DIALOG_TIMER_ROUNDS):
        for timer in list(_core._activeTimers):
            timer._due = 0.0
        _core.processEvents()


def _answer(kind: str, text: str):
    asked.append((kind, text))
    if _open:
        stackedDialogs.append((kind, text))
    for i, (k, v) in enumerate(_answers):  # noqa: B007 (v is the answer returned below)
        if k == kind:
            del _answers[i]
            break
    else:
        raise AssertionError(f"{kind} opened without a prepared answer: {text!r}")
    if _open:  # already wrong (recorded above); not spun again, which in Qt would nest without end
        return v
    _open.append(kind)
    try:
        _spin()
    finally:
        _open.pop()
    return v


class QTableWidgetItem:
    def __init__(self, text=""):
        self._text, self._data, self._flags = str(text), {}, Qt.ItemIsSelectable | Qt.ItemIsEnabled
        self._toolTip = ""

    def text(self):
        return self._text

    def setText(self, text):
        self._text = str(text)

    def data(self, role):
        return self._text if role == Qt.DisplayRole else self._data.get(role)

    def setData(self, role, value):
        if role == Qt.DisplayRole:
            self._text = str(value)
        else:
            self._data[role] = value

    def flags(self):
        return self._flags

    def setFlags(self, flags):
        self._flags = flags

    def setToolTip(self, text):
        self._toolTip = text

    def toolTip(self):
        return self._toolTip


class QHeaderView(QObject):
    Interactive, Stretch, Fixed, ResizeToContents = 0, 1, 2, 3
    stretchLastSection = Prop(False)
    visible = Prop(True)

    def setSectionResizeMode(self, *args):
        pass

    def setStretchLastSection(self, on):
        self.stretchLastSection = on


class QAbstractItemView(QFrame):
    NoEditTriggers, CurrentChanged, DoubleClicked, AllEditTriggers = 0, 1, 2, 31
    SelectItems, SelectRows, SelectColumns = 0, 1, 2
    NoSelection, SingleSelection, MultiSelection, ExtendedSelection = 0, 1, 2, 3
    editTriggers = Prop(DoubleClicked)
    selectionBehavior = Prop(SelectItems)
    selectionMode = Prop(ExtendedSelection)
    alternatingRowColors = Prop(False)


class QTableWidget(QAbstractItemView):
    itemSelectionChanged = Signal("itemSelectionChanged()")
    currentCellChanged = Signal("currentCellChanged(int,int,int,int)")
    cellClicked = Signal("cellClicked(int,int)")
    cellDoubleClicked = Signal("cellDoubleClicked(int,int)")
    cellChanged = Signal("cellChanged(int,int)")
    itemChanged = Signal("itemChanged(QTableWidgetItem*)")
    sortingEnabled = Prop(False)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._cells: dict[tuple[int, int], QTableWidgetItem] = {}
        self._rows, self._cols, self._current = 0, 0, (-1, -1)
        self._hlabels: list[str] = []
        self._hheader, self._vheader = QHeaderView(self), QHeaderView(self)

    @property
    def rowCount(self):
        return self._rows

    @rowCount.setter
    def rowCount(self, n):
        self.setRowCount(n)

    @property
    def columnCount(self):
        return self._cols

    @columnCount.setter
    def columnCount(self, n):
        self._cols = int(n)
        self._cells = {k: v for k, v in self._cells.items() if k[1] < self._cols}

    @classmethod
    def declaredProperties(cls):
        return super().declaredProperties() | {"rowCount", "columnCount"}

    def setRowCount(self, n):
        self._rows = int(n)
        self._cells = {k: v for k, v in self._cells.items() if k[0] < self._rows}
        if self._current[0] >= self._rows:
            self.setCurrentCell(-1, -1)

    def setColumnCount(self, n):
        self.columnCount = n

    def setHorizontalHeaderLabels(self, labels):
        self._hlabels = [str(x) for x in labels]
        self._cols = max(self._cols, len(self._hlabels))

    def horizontalHeaderItem(self, col):
        return QTableWidgetItem(self._hlabels[col]) if col < len(self._hlabels) else None

    def horizontalHeader(self):
        return self._hheader

    def verticalHeader(self):
        return self._vheader

    def setItem(self, row, col, item):
        if 0 <= row < self._rows and 0 <= col < self._cols:
            self._cells[(row, col)] = item

    def item(self, row, col):
        return self._cells.get((row, col))

    def clearContents(self):
        self._cells.clear()

    def currentRow(self):
        return self._current[0]

    def currentColumn(self):
        return self._current[1]

    def setCurrentCell(self, row, col):
        old = self._current
        if not (0 <= row < self._rows and 0 <= col < max(self._cols, 1)):
            row, col = -1, -1
        self._current = (row, col)
        if old != self._current:
            self.emit("currentCellChanged(int,int,int,int)", row, col, old[0], old[1])
            self.emit("itemSelectionChanged()")

    def selectRow(self, row):
        self.setCurrentCell(row, 0)

    def resizeColumnsToContents(self):
        pass


class QMessageBox(QDialog):
    Ok, Save, Cancel, Close, Yes, No, Retry, Ignore = (
        0x400,
        0x800,
        0x400000,
        0x200000,
        0x4000,
        0x10000,
        0x80000,
        0x100000,
    )
    NoIcon, Information, Warning, Critical, Question = 0, 1, 2, 3, 4
    text = Prop("")
    informativeText = Prop("")
    detailedText = Prop("")
    icon = Prop(0)
    standardButtons = Prop(0)

    def exec_(self):
        return _answer("QMessageBox", self.text)

    exec = exec_

    @staticmethod
    def question(parent, title, text, *args):
        return _answer("QMessageBox.question", text)

    @staticmethod
    def warning(parent, title, text, *args):
        return _answer("QMessageBox.warning", text)

    @staticmethod
    def information(parent, title, text, *args):
        return _answer("QMessageBox.information", text)

    @staticmethod
    def critical(parent, title, text, *args):
        return _answer("QMessageBox.critical", text)


class QFileDialog(QDialog):
    @staticmethod
    def getSaveFileName(parent=None, caption="", directory="", filter=""):
        return _answer("QFileDialog.getSaveFileName", caption)

    @staticmethod
    def getOpenFileName(parent=None, caption="", directory="", filter=""):
        return _answer("QFileDialog.getOpenFileName", caption)

    @staticmethod
    def getExistingDirectory(parent=None, caption="", directory=""):
        return _answer("QFileDialog.getExistingDirectory", caption)


class QInputDialog(QDialog):
    @staticmethod
    def getText(parent, title, label, echo=0, text=""):
        return _answer("QInputDialog.getText", label)


class QProgressDialog(QDialog):
    value = Prop(0)
    maximum = Prop(100)
    minimumDuration = Prop(4000)
    labelText = Prop("")
    wasCanceled = Prop(False)


class QDesktopServices:
    @staticmethod
    def openUrl(url):
        return _answer("QDesktopServices.openUrl", getattr(url, "url", str(url)))


class QMainWindow(QWidget):
    pass


__all__ = [
    "QTableWidgetItem",
    "QHeaderView",
    "QAbstractItemView",
    "QTableWidget",
    "QMessageBox",
    "QFileDialog",
    "QInputDialog",
    "QProgressDialog",
    "QDesktopServices",
    "QMainWindow",
    "answerNextDialog",
    "clearDialogAnswers",
    "asked",
    "stackedDialogs",
    "QWidget",
]
