"""Qt widget stand-ins: the classes the module, its .ui file and Slicer's Python files build.

Signals, properties and their defaults follow the Qt 5 headers (qwidget.h,
qabstractbutton.h, qcombobox.h, qspinbox.h, qlineedit.h, qtablewidget.h,
...). What changes a value emits what Qt emits: ``clear()`` on a combo box
emits ``currentIndexChanged(-1)``, the first ``addItem`` selects item 0, a
double spin box rounds to its ``decimals`` and clamps to its range. Nothing is
drawn: ``visible`` is what the code asked for (``isVisibleTo`` its parent).
"""

from __future__ import annotations

from ._core import Prop, QObject, Signal


class Qt:
    """The Qt namespace's enums used by the module and Slicer's Python files."""

    WaitCursor, ArrowCursor = 16, 0
    NoModifier, ShiftModifier, ControlModifier = 0, 0x02000000, 0x04000000
    Horizontal, Vertical = 1, 2
    DisplayRole, ToolTipRole, BackgroundRole, UserRole = 0, 3, 8, 256  # Qt::ItemDataRole
    ItemIsSelectable, ItemIsEditable, ItemIsEnabled = 1, 2, 32
    AlignLeft, AlignRight, AlignCenter = 1, 2, 0x84
    Checked, Unchecked = 2, 0


class QWidget(QObject):
    enabled = Prop(True)
    visible = Prop(True)
    toolTip = Prop("")
    statusTip = Prop("")
    whatsThis = Prop("")
    windowTitle = Prop("")
    styleSheet = Prop("")
    minimumWidth = Prop(0)
    minimumHeight = Prop(0)
    maximumHeight = Prop(16777215)
    geometry = Prop(None)
    sizePolicy = Prop(None)
    focusPolicy = Prop(0)
    customContextMenuRequested = Signal("customContextMenuRequested(QPoint)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._layout = None

    def isWidgetType(self):
        return True

    def parentWidget(self):
        p = self.parent()
        while p is not None and not isinstance(p, QWidget):
            p = p.parent()
        return p

    def layout(self):
        return self._layout

    def setLayout(self, layout):
        self._layout = layout
        layout.setParent(self)
        for w in layout._widgets():
            w.setParent(self)

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def isVisible(self):
        w = self
        while w is not None:
            if isinstance(w, QWidget) and not w.visible:
                return False
            w = w.parent()
        return True

    def isEnabled(self):
        return self.enabled

    def close(self):
        self.visible = False
        return True

    def update(self):
        pass

    def setSizePolicy(self, *args):
        self.sizePolicy = args

    def setFixedHeight(self, h):
        self.minimumHeight = self.maximumHeight = h


class QSpacerItem:
    def __init__(self, w=20, h=40, hPolicy=None, vPolicy=None):
        self.size = (w, h)


class QLayout(QObject):
    spacing = Prop(6)
    contentsMargins = Prop(None)

    def __init__(self, parent=None):
        super().__init__(None)
        self._items: list = []
        if isinstance(parent, QWidget):
            parent.setLayout(self)

    def _owner(self):
        p = self.parent()
        while p is not None and not isinstance(p, QWidget):
            p = p.parent()
        return p

    def _widgets(self):
        return [i for i in self._items if isinstance(i, QWidget)]

    def addWidget(self, widget, *args):
        self._items.append(widget)
        owner = self._owner()
        if owner is not None:
            widget.setParent(owner)

    def insertWidget(self, index, widget, *args):
        """As QBoxLayout::insertWidget: a negative index appends."""
        self.addWidget(widget)
        self._items.remove(widget)
        self._items.insert(index if 0 <= index <= len(self._items) else len(self._items), widget)

    def indexOf(self, widget):
        return self._items.index(widget) if widget in self._items else -1

    def addLayout(self, layout, *args):
        self._items.append(layout)
        layout.setParent(self)
        owner = self._owner()
        if owner is not None:
            for w in layout._widgets():
                w.setParent(owner)

    def addItem(self, item, *args):
        self._items.append(item)

    def addSpacerItem(self, item):
        self._items.append(item)

    def addStretch(self, stretch=0):
        self._items.append(QSpacerItem())

    def count(self):
        return len(self._items)

    def itemAt(self, i):
        return self._items[i] if 0 <= i < len(self._items) else None

    def removeItem(self, item):
        if item in self._items:
            self._items.remove(item)

    def removeWidget(self, widget):
        self.removeItem(widget)

    def setContentsMargins(self, *m):
        self.contentsMargins = m

    def setSpacing(self, s):
        self.spacing = s

    def setMargin(self, m):
        self.contentsMargins = (m,) * 4


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QGridLayout(QLayout):
    def addWidget(self, widget, row=0, col=0, *args):
        super().addWidget(widget)


class QFormLayout(QLayout):
    def addRow(self, *args):
        for a in args:
            if isinstance(a, QWidget):
                self.addWidget(a)
            elif isinstance(a, QLayout):
                self.addLayout(a)
            elif isinstance(a, str):
                self.addWidget(QLabel(a))

    def setWidget(self, row, role, widget):
        self.addWidget(widget)

    def setLayout(self, row, role, layout):
        self.addLayout(layout)


class QFrame(QWidget):
    frameShape = Prop(0)
    frameShadow = Prop(0)


class QLabel(QFrame):
    text = Prop("")
    wordWrap = Prop(False)
    textFormat = Prop(0)
    alignment = Prop(0)
    openExternalLinks = Prop(False)
    linkActivated = Signal("linkActivated(QString)")

    def __init__(self, text="", parent=None):
        if isinstance(text, QObject):
            text, parent = "", text
        super().__init__(parent)
        self.text = text


def _toggle_convert(obj, value):
    return bool(value) and obj.checkable


class QAbstractButton(QWidget):
    clicked = Signal("clicked(bool)", "clicked()")
    toggled = Signal("toggled(bool)")
    pressed = Signal("pressed()")
    released = Signal("released()")
    text = Prop("")
    icon = Prop(None)
    checkable = Prop(False)
    checked = Prop(False, notify="toggled(bool)", convert=_toggle_convert)
    autoRepeat = Prop(False)
    iconSize = Prop(None)

    def __init__(self, text="", parent=None):
        if isinstance(text, QObject):
            text, parent = "", text
        super().__init__(parent)
        self.text = text

    def isChecked(self):
        return self.checked

    def click(self):
        """What a mouse click does: nothing when disabled; toggles a checkable button; emits clicked."""
        if not self.enabled:
            return
        self.emit("pressed()")
        self.emit("released()")
        if self.checkable:
            self.checked = not self.checked
        self.emit("clicked(bool)", self.checked)
        self.emit("clicked()")


class QPushButton(QAbstractButton):
    default = Prop(False)
    flat = Prop(False)

    def setMenu(self, menu):
        self._menu = menu


class QToolButton(QAbstractButton):
    def setMenu(self, menu):
        self._menu = menu

    def setDefaultAction(self, action):
        self._defaultAction = action

    def defaultAction(self):
        return getattr(self, "_defaultAction", None)


class QCheckBox(QAbstractButton):
    stateChanged = Signal("stateChanged(int)")
    tristate = Prop(False)

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True
        self.connect("toggled(bool)", lambda on: self.emit("stateChanged(int)", Qt.Checked if on else Qt.Unchecked))


class QRadioButton(QAbstractButton):
    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True


class QLineEdit(QWidget):
    Normal, NoEcho, Password, PasswordEchoOnEdit = 0, 1, 2, 3
    textChanged = Signal("textChanged(QString)")
    textEdited = Signal("textEdited(QString)")
    editingFinished = Signal("editingFinished()")
    returnPressed = Signal("returnPressed()")
    text = Prop("", notify="textChanged(QString)", convert=lambda o, v: "" if v is None else str(v))
    placeholderText = Prop("")
    readOnly = Prop(False)
    echoMode = Prop(0)
    maxLength = Prop(32767)

    def clear(self):
        self.text = ""


def _index_convert(obj, value):
    value = int(value)
    return value if -1 <= value < len(obj._items) else obj.currentIndex


class QComboBox(QWidget):
    currentIndexChanged = Signal("currentIndexChanged(int)", "currentIndexChanged(QString)")
    currentTextChanged = Signal("currentTextChanged(QString)")
    activated = Signal("activated(int)")
    editTextChanged = Signal("editTextChanged(QString)")
    currentIndex = Prop(-1, convert=_index_convert)
    editable = Prop(False)
    maxVisibleItems = Prop(10)
    sizeAdjustPolicy = Prop(0)

    def __init__(self, parent=None):
        self._items: list[tuple[str, object]] = []
        super().__init__(parent)

    def __setattr__(self, key, value):
        if key == "currentIndex":
            old = self.__dict__.get("_prop_currentIndex", -1)
            super().__setattr__(key, value)
            if self.currentIndex != old:
                self.emit("currentIndexChanged(int)", self.currentIndex)
                self.emit("currentTextChanged(QString)", self.currentText)
            return
        super().__setattr__(key, value)

    @property
    def currentText(self):
        i = self.currentIndex
        return self._items[i][0] if 0 <= i < len(self._items) else ""

    @property
    def count(self):  # a read-only Q_PROPERTY: PythonQt gives the value, not a method
        return len(self._items)

    def addItem(self, text, userData=None):
        self._items.append((str(text), userData))
        if self.currentIndex < 0:
            self.currentIndex = 0

    def addItems(self, texts):
        for t in texts:
            self.addItem(t)

    def clear(self):
        self._items = []
        self.__dict__["_prop_currentIndex"] = -1
        self.emit("currentIndexChanged(int)", -1)
        self.emit("currentTextChanged(QString)", "")

    def itemText(self, i):
        return self._items[i][0] if 0 <= i < len(self._items) else ""

    def itemData(self, i, role=Qt.UserRole):
        return self._items[i][1] if 0 <= i < len(self._items) else None

    def findText(self, text):
        return next((i for i, (t, _) in enumerate(self._items) if t == text), -1)

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self._items) if d == data), -1)

    def setCurrentText(self, text):
        i = self.findText(text)
        if i >= 0:
            self.currentIndex = i
