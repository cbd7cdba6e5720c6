"""The panel's "Compute on: this computer / server" fields (Advanced section), wired to
:class:`MedDIFTSceneLib.remote.ComputeSettings`. A mixin of ``MedDIFT.MedDIFTWidget`` (it uses its
``ui``, ``logic`` and ``_log``).

These are the user's settings, not the scene's: they live in ``slicer.app.settings()``, read when
the panel is built and written on every change, except the token, which is written only while
"Remember the token" is ticked (unticking removes a stored one) and otherwise lives in this panel
for the Slicer session. The choice reaches the logic at the next Apply (:meth:`useComputeSettings`),
checked first, so that a bad URL or a missing token is said in the panel before any job starts,
and so that a run in progress is never switched under its feet.
"""

from __future__ import annotations

from slicer.i18n import tr as _

import slicer

WHERE = ("local", "server")  # index of the combo box -> ComputeSettings.where
SERVER_FIELDS = (
    "serverUrlLabel",
    "serverUrlLineEdit",
    "serverTokenLabel",
    "serverTokenLineEdit",
    "serverCaFileLabel",
    "serverCaFilePathLineEdit",
    "rememberTokenCheckBox",
)
"""Enabled only when "server" is chosen."""


def effective(settings) -> tuple:
    """What decides which client the logic needs: on this computer the server fields do not matter
    (editing them must not stop a local worker and its features)."""
    if settings.where == "local":
        return ("local",)
    return ("server", settings.url.strip(), settings.token.strip(), settings.ca_file)


class ComputeOnMixin:
    def setupComputeOn(self) -> None:
        """Fill the fields from the settings, then follow them (filling first: nothing is saved back)."""
        from MedDIFTSceneLib.remote import ComputeSettings

        self.computeSettings = ComputeSettings.load(slicer.app.settings())
        self._computeInUse = None  # effective() of the settings the logic was last pointed at
        ui, s = self.ui, self.computeSettings
        ui.computeOnComboBox.currentIndex = WHERE.index(s.where) if s.where in WHERE else 0
        ui.serverUrlLineEdit.text = s.url
        ui.serverTokenLineEdit.text = s.token
        ui.serverCaFilePathLineEdit.currentPath = s.ca_file
        ui.rememberTokenCheckBox.checked = s.store_token
        ui.computeOnComboBox.connect("currentIndexChanged(int)", self.onComputeOnChanged)
        ui.serverUrlLineEdit.connect("textChanged(QString)", self.onComputeOnChanged)
        ui.serverTokenLineEdit.connect("textChanged(QString)", self.onComputeOnChanged)
        ui.serverCaFilePathLineEdit.connect("currentPathChanged(QString)", self.onComputeOnChanged)
        ui.rememberTokenCheckBox.connect("toggled(bool)", self.onComputeOnChanged)
        self._enableServerFields()

    def onComputeOnChanged(self, *args) -> None:
        ui, s = self.ui, self.computeSettings
        s.where = WHERE[max(0, ui.computeOnComboBox.currentIndex)]
        s.url, s.token = ui.serverUrlLineEdit.text, ui.serverTokenLineEdit.text
        s.ca_file, s.store_token = ui.serverCaFilePathLineEdit.currentPath, bool(ui.rememberTokenCheckBox.checked)
        s.save(slicer.app.settings())
        self._enableServerFields()

    def _enableServerFields(self) -> None:
        server = self.computeSettings.where == "server"
        for name in SERVER_FIELDS:
            getattr(self.ui, name).enabled = server

    def useComputeSettings(self) -> bool:
        """Before a job: point the logic at the panel's choice (stopping the other kind of worker only
        when the choice changed). False, with the reason in the panel, when the setting cannot work."""
        from MedDIFTLib.errors import InputError
        from MedDIFTSceneLib.remote import use_settings

        s = self.computeSettings
        try:
            if effective(s) != self._computeInUse:
                use_settings(self.logic.core, s)  # checks the setting first
                self._computeInUse = effective(s)
                self._log(_("Compute on: {where}").format(where=s.describe()))
            else:
                s.check()
        except InputError as err:
            self.ui.statusLabel.text = _("Not started: {error}").format(error=err)
            self._log(self.ui.statusLabel.text)
            slicer.util.errorDisplay(_("MedDIFT could not start: {error}").format(error=err))
            return False
        return True
