"""The lesion worksheet's section of the panel: measure on the baseline, propose on the follow-ups, accept,
describe each lesion, assess each study, export.

Thin on purpose: every action is one call into :mod:`MedDIFTSceneLib.worksheet` (Qt-free, tested without
a GUI) on the session the panel's chooser shows; the table is redrawn from the scene after each action.
The pair's dense field, where the background registration of that pair finished, is taken from the
logic's registrations (the same field that placed the matches); otherwise a line moves with its point match.
"""

from __future__ import annotations

from pathlib import Path

import ctk
import qt
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

import slicer
from MedDIFTLib.errors import InputError
from MedDIFTSceneLib import worksheet as ws
from MedDIFTSceneLib.densefield import pair_key
from MedDIFTSceneLib.worksheet_report import export_worksheet

FIRST_LENGTH_COLUMN = 4  # Lesion, Kind, Organ, Lymph node, then one column per time point


class WorksheetPanel(VTKObservationMixin):
    """The worksheet section of ``widget`` (a ``MedDIFTWidget``: its ``layout``, ``session``, ``logic``,
    ``sessionComboBox`` and ``_log`` are used). The table follows the session's lines as the reader drags
    them (redrawn once the dragging pauses). Call :meth:`cleanup` when the widget goes."""

    def __init__(self, widget):
        VTKObservationMixin.__init__(self)
        self.widget = widget
        self.refreshTimer = qt.QTimer()
        self.refreshTimer.singleShot, self.refreshTimer.interval = True, 200
        self.refreshTimer.connect("timeout()", self.refresh)
        self.section = ctk.ctkCollapsibleButton()
        self.section.text = _("Lesion worksheet (RECIST 1.1)")
        form = qt.QFormLayout(self.section)
        self.lineSelector = slicer.qMRMLNodeComboBox()
        self.lineSelector.nodeTypes = ["vtkMRMLMarkupsLineNode"]
        self.lineSelector.addEnabled, self.lineSelector.noneEnabled = False, True
        self.lineSelector.setMRMLScene(slicer.mrmlScene)
        self.lineSelector.toolTip = _("The line you drew across the lesion on the baseline")
        self.measureButton = self._button(_("Measure on baseline"), _("Draw a new line across a lesion"))
        self.placeWidget = slicer.qSlicerMarkupsPlaceWidget()
        self.placeWidget.setMRMLScene(slicer.mrmlScene)
        form.addRow(_("Baseline line:"), self._row(self.lineSelector, self.measureButton, self.placeWidget))
        self.kindComboBox = qt.QComboBox()
        for kind in ("target", "non-target"):
            self.kindComboBox.addItem(_(kind), kind)
        self.organLineEdit = qt.QLineEdit()
        self.organLineEdit.placeholderText = _("organ")
        self.nodeCheckBox = qt.QCheckBox(_("lymph node (short axis)"))
        self.addButton = self._button(_("Add lesion"), _("Add the line as a lesion (or update the selected one)"))
        form.addRow(_("Lesion:"), self._row(self.kindComboBox, self.organLineEdit, self.nodeCheckBox, self.addButton))
        self.proposeButton = self._button(
            _("Propose on follow-ups"), _("Place each lesion's line on every follow-up, where its match went")
        )
        self.acceptButton = self._button(_("Accept"), _("Accept the selected follow-up line as it is now"))
        self.reopenButton = self._button(_("Measure again"), _("Unlock an accepted line; it counts once accepted"))
        form.addRow(self._row(self.proposeButton, self.acceptButton, self.reopenButton))
        self.table = qt.QTableWidget()
        form.addRow(self.table)
        self.timePointComboBox, self.newLesionsComboBox, self.nonTargetComboBox = (qt.QComboBox() for _i in range(3))
        for value in ("no", "yes", "equivocal"):
            self.newLesionsComboBox.addItem(_(value), value)
        for value in ("", *ws.NON_TARGET_CHOICES):
            self.nonTargetComboBox.addItem(value or _("(none followed)"), value)
        form.addRow(
            _("Study:"),
            self._row(self.timePointComboBox, qt.QLabel(_("new lesions")), self.newLesionsComboBox),
        )
        form.addRow(_("Non-target lesions:"), self.nonTargetComboBox)
        self.responseLabel = qt.QLabel("")
        self.responseLabel.wordWrap = True
        form.addRow(_("Response:"), self.responseLabel)
        self.exportButton = self._button(_("Export worksheet..."), _("A CSV and a one-page HTML report beside it"))
        form.addRow(self.exportButton)
        widget.layout.addWidget(self.section)
        self.measureButton.connect("clicked(bool)", self.onMeasure)
        self.addButton.connect("clicked(bool)", self.onAddLesion)
        self.proposeButton.connect("clicked(bool)", self.onPropose)
        self.acceptButton.connect("clicked(bool)", lambda: self.onAccept(ws.accept_line))
        self.reopenButton.connect("clicked(bool)", lambda: self.onAccept(ws.reopen_line))
        self.exportButton.connect("clicked(bool)", self.onExport)
        self.table.connect("currentCellChanged(int,int,int,int)", self.onCellChanged)
        self.timePointComboBox.connect("currentIndexChanged(int)", lambda _i: self._showAssessment())
        self.newLesionsComboBox.connect("currentIndexChanged(int)", lambda _i: self._assess())
        self.nonTargetComboBox.connect("currentIndexChanged(int)", lambda _i: self._assess())
        widget.sessionComboBox.connect("currentIndexChanged(int)", lambda _i: self.refresh())
        self._showing = False
        self.refresh()

    @staticmethod
    def _button(text: str, tip: str):
        button = qt.QPushButton(text)
        button.toolTip = tip
        return button

    @staticmethod
    def _row(*widgets):
        row = qt.QWidget()
        box = qt.QHBoxLayout(row)
        for w in widgets:
            box.addWidget(w)
        return row

    @property
    def session(self):
        return self.widget.session

    def fieldFor(self, fixed, moving):
        """The finished dense field of exactly this pair (its voxels unchanged since), or None."""
        key = pair_key(slicer.mrmlScene, fixed.GetID(), moving.GetID(), {})[:4]
        for d in reversed(self.widget.logic.core.registrations.items):
            if d.ready() and d.key[:4] == key:
                return d.field
        return None

    # --- actions ---------------------------------------------------------------------------------

    def onMeasure(self) -> None:
        line = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLMarkupsLineNode", slicer.mrmlScene.GenerateUniqueName("lesion")
        )
        self.lineSelector.setCurrentNode(line)
        self.placeWidget.setCurrentNode(line)
        self.placeWidget.placeModeEnabled = True
        self._say(_("Click the two ends of the lesion on the baseline, then Add lesion."))

    def onAddLesion(self) -> None:
        if self.session is None:
            self._say(_("Track a baseline and its follow-ups first."))
            return
        line, kind = self.lineSelector.currentNode(), self.kindComboBox.itemData(self.kindComboBox.currentIndex)
        with slicer.util.tryWithErrorDisplay(_("Could not add the lesion.")):
            if line is not None and any(line is other for other in ws.lesions(self.session)):
                ws.set_lesion_info(line, kind, self.organLineEdit.text, self.nodeCheckBox.checked)
                label = ws.label_of(line)
            else:
                label = ws.add_lesion(self.session, line, kind, self.organLineEdit.text, self.nodeCheckBox.checked)
            self._say(_("Lesion {label}: {kind}").format(label=label, kind=kind))
        self.refresh()

    def onPropose(self) -> None:
        if self.session is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not propose the follow-up lines.")):
            done = ws.propose_all(self.session, self.fieldFor)
            kept = sum(1 for _label, _t, what in done if what.startswith("kept"))
            self._say(_("{n} lines proposed; {kept} of yours kept").format(n=len(done) - kept, kept=kept))
        self.refresh()

    def selectedLine(self):
        """(lesion's baseline line, time point) of the selected cell, or None."""
        row, col = self.table.currentRow(), self.table.currentColumn()
        lines = ws.lesions(self.session) if self.session is not None else []
        if not 0 <= row < len(lines) or col < FIRST_LENGTH_COLUMN:
            return None
        return lines[row], col - FIRST_LENGTH_COLUMN

    def onAccept(self, action=ws.accept_line) -> None:
        """Accept (or, with ``reopen_line``, measure again) the selected follow-up's line."""
        selected = self.selectedLine()
        if selected is None or selected[1] == 0:
            self._say(_("Select a follow-up's cell of a lesion to accept its line."))
            return
        line = ws.follow_up_line(*selected)
        with slicer.util.tryWithErrorDisplay(_("Could not change the line.")):
            if line is None:
                raise InputError(_("that follow-up has no line yet: press Propose on follow-ups"))
            length = action(line)
            done = _("{mm:.1f} mm accepted").format(mm=length) if length is not None else _("measure again")
            self._say(f"{line.GetName()}: {done}")
        self.refresh()

    def onCellChanged(self, row: int, col: int, *_previous) -> None:
        """Show the selected time point's scan in the red view, centred on the lesion's line there."""
        selected = self.selectedLine()
        if selected is None:
            return
        lesion, t = selected
        line = lesion if t == 0 else ws.follow_up_line(lesion, t)
        lm = slicer.app.layoutManager()
        if line is None or line.GetNumberOfDefinedControlPoints() != 2 or lm is None or lm.sliceWidget("Red") is None:
            return
        logic = lm.sliceWidget("Red").sliceLogic()
        logic.GetSliceCompositeNode().SetBackgroundVolumeID(self.session.volumes()[t].GetID())
        logic.GetSliceNode().JumpSliceByCentering(*ws.line_points(line).mean(axis=0))

    def _assess(self) -> None:
        t = self.timePointComboBox.currentIndex + 1
        if self._showing or self.session is None or t < 1:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not record the assessment.")):
            ws.set_assessment(
                self.session,
                t,
                self.newLesionsComboBox.itemData(self.newLesionsComboBox.currentIndex),
                self.nonTargetComboBox.itemData(self.nonTargetComboBox.currentIndex),
            )
        self._showResponse()

    def onExport(self) -> None:
        if self.session is None:
            return
        path = qt.QFileDialog.getSaveFileName(None, _("Export the lesion worksheet"), "worksheet.csv", "*.csv")
        if not path:
            return
        csv_path = Path(path)
        html_path = csv_path.with_suffix(".html")
        if html_path.exists() and not slicer.util.confirmOkCancelDisplay(
            _("{name} exists. Replace it with this worksheet's report?").format(name=html_path.name)
        ):
            return
        with slicer.util.tryWithErrorDisplay(_("Export failed.")):
            # the save dialog asked about the CSV, and the report was asked about just above
            written = export_worksheet(self.session, csv_path, html_path, force=True)
            self._say(_("Exported: {files}").format(files=", ".join(str(w) for w in written)))

    def _say(self, text: str) -> None:
        self.widget._log(text)

    # --- the table -------------------------------------------------------------------------------

    def cleanup(self) -> None:
        self.refreshTimer.stop()
        self.removeObservers()

    def _observe(self, lines: list, n_follow_ups: int) -> None:
        self.removeObservers()
        for lesion in lines:
            follow = [ws.follow_up_line(lesion, t) for t in range(1, n_follow_ups + 1)]
            for line in [lesion, *[x for x in follow if x is not None]]:
                for event in (line.PointModifiedEvent, line.PointPositionDefinedEvent):
                    self.addObserver(line, event, lambda *_args: self.refreshTimer.start())

    def refresh(self) -> None:
        """The table, the study chooser and the response, from the scene."""
        session = self.session
        names = ws.timepoint_names(session) if session is not None else []
        lines = ws.lesions(session) if session is not None else []
        self._observe(lines, len(names) - 1)
        self.table.setRowCount(len(lines))
        self.table.setColumnCount(FIRST_LENGTH_COLUMN + len(names))
        self.table.setHorizontalHeaderLabels([_("Lesion"), _("Kind"), _("Organ"), _("Lymph node"), *names])
        for row, line in enumerate(lines):
            info = ws.lesion_description(line)
            cells = [info.label, info.kind.value, info.organ, _("yes") if info.lymph_node else ""]
            cells += [cellText(line, t) for t in range(len(names))]
            for col, text in enumerate(cells):
                self.table.setItem(row, col, qt.QTableWidgetItem(text))
        self._showing = True
        try:
            current = self.timePointComboBox.currentIndex
            self.timePointComboBox.clear()
            for name in names[1:]:
                self.timePointComboBox.addItem(name)
            if len(names) > 1:
                self.timePointComboBox.currentIndex = min(max(current, 0), len(names) - 2)
        finally:
            self._showing = False
        self._showAssessment()

    def _showAssessment(self) -> None:
        t = self.timePointComboBox.currentIndex + 1
        if self.session is None or t < 1:
            self._showResponse()
            return
        self._showing = True
        try:
            new = self.session.node.GetParameter(f"worksheet.newLesions.{t}") or "no"
            nt = self.session.node.GetParameter(f"worksheet.nonTarget.{t}") or ""
            self.newLesionsComboBox.currentIndex = self.newLesionsComboBox.findData(new)
            self.nonTargetComboBox.currentIndex = self.nonTargetComboBox.findData(nt)
        finally:
            self._showing = False
        self._showResponse()

    def _showResponse(self) -> None:
        if self.session is None or not ws.lesions(self.session):
            self.responseLabel.text = ""
            return
        try:
            table = ws.build_worksheet(self.session)
        except Exception as err:  # noqa: BLE001 - a line being drawn: said in the label, nothing changed
            self.responseLabel.text = str(err)
            return
        parts = []
        for r in table.results[1:]:
            why = f" ({'; '.join(r.reasons)})" if r.reasons else ""
            parts.append(f"{r.name}: {r.overall.value}{why}")
        self.responseLabel.text = "\n".join(parts + [f"! {w}" for w in table.warnings])


def cellText(lesion_line, t: int) -> str:
    """What a length cell says: the accepted length, or the line's state where none counts yet."""
    if t == 0:
        try:
            return f"{ws.line_length(lesion_line):.1f} mm"
        except InputError:  # not both ends placed yet
            return _("(being drawn)")
    line = ws.follow_up_line(lesion_line, t)
    if line is None:
        return ""
    length = ws.accepted_length(lesion_line, t)
    if length is not None:
        return f"{length:.1f} mm"
    return _("{status} ({mm:.1f} mm)").format(status=ws.status(line), mm=ws.line_length(line))
