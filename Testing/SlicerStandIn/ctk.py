"""Stand-in for PythonQt's ``ctk`` module: the CTK widgets the module's ``.ui`` file uses.

Signals and properties follow CTK's headers (ctkCollapsibleButton.h,
ctkPathLineEdit.h). The remaining classes exist because Slicer's
parameterNodeWrapper names them in its type checks (``type(widget) in
(qt.QCheckBox, ctk.ctkCheckBox)``); they are plain widgets of their own type
so those checks answer as in Slicer.
"""

from qt import Prop, QAbstractButton, QComboBox, QDoubleSpinBox, QMessageBox, QWidget, Signal


class ctkCollapsibleButton(QAbstractButton):
    contentsCollapsed = Signal("contentsCollapsed(bool)")
    collapsed = Prop(False, notify="contentsCollapsed(bool)")
    collapsedHeight = Prop(14)
    contentsFrameShape = Prop(0)
    buttonTextAlignment = Prop(0)

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True
        self.checked = True
        # ctkCollapsibleButton: checked == !collapsed, kept in step both ways
        self.connect("toggled(bool)", lambda on: setattr(self, "collapsed", not on))
        self.connect("contentsCollapsed(bool)", lambda c: setattr(self, "checked", not c))


class ctkPathLineEdit(QWidget):
    # ctkPathLineEdit::Filter
    Dirs, Files, Drives, NoDotAndDotDot, Readable, Writable, Executable = 0x1, 0x2, 0x4, 0x1000, 0x10, 0x20, 0x40
    currentPathChanged = Signal("currentPathChanged(QString)")
    validInputChanged = Signal("validInputChanged(bool)")
    currentPath = Prop("", notify="currentPathChanged(QString)", convert=lambda o, v: "" if v is None else str(v))
    filters = Prop(0)
    nameFilters = Prop(None)
    label = Prop("")
    settingKey = Prop("")
    showBrowseButton = Prop(True)
    showHistoryButton = Prop(True)

    def addCurrentPathToHistory(self):
        pass


class ctkMessageBox(QMessageBox):
    dontShowAgainVisible = Prop(False)
    dontShowAgainSettingsKey = Prop("")


class ctkComboBox(QComboBox):
    defaultText = Prop("")


class ctkCheckBox(QAbstractButton):
    pass


class ctkCheckablePushButton(QAbstractButton):
    checkBoxControlsButtonToggleState = Prop(False)


class ctkDoubleSpinBox(QDoubleSpinBox):
    pass


class ctkSliderWidget(QDoubleSpinBox):
    pass


class ctkDoubleSlider(QDoubleSpinBox):
    pass


class ctkRangeWidget(QWidget):
    pass


class ctkDoubleRangeSlider(QWidget):
    pass


class ctkDirectoryButton(QWidget):
    directoryChanged = Signal("directoryChanged(QString)")
    directory = Prop("", notify="directoryChanged(QString)")


class ctkColorPickerButton(QWidget):
    colorChanged = Signal("colorChanged(QColor)")
    color = Prop(None, notify="colorChanged(QColor)")


class ctkWidgetsUtils:
    @staticmethod
    def grabWidget(widget, rect=None):
        raise RuntimeError("nothing is drawn in the headless stand-in: no screenshot can be grabbed")
