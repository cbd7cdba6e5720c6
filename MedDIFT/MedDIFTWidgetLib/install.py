"""MedDIFT's Python dependencies inside Slicer: checked for the options of a run, installed after
asking, never in testing mode, and the worker's interpreter. A mixin of ``MedDIFT.MedDIFTLogic``
(through :class:`MedDIFTWidgetLib.slicerlogic.SlicerLogicMixin`); the Qt-free checks are in
:mod:`MedDIFTSceneLib.dependencies`.

Testing mode installs nothing: the Extensions Index's build machines run the self-test in a
Slicer without torch or MONAI, where an install would download gigabytes (or fail) inside a test.
The self-test then skips, saying why (:meth:`selfTestSkipReason`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import qt
from slicer.i18n import tr as _

import slicer
from MedDIFTSceneLib import dependencies as deps  # through the module: tests replace its look-ups

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources")
REQUIREMENTS_FILE = os.path.join(RESOURCES, "requirements.txt")


class DependencyLogicMixin:
    dependencyMessage: str | None = None
    """Why the last :meth:`ensureDependencies` said no, in the panel's words (None: it said yes)."""

    @staticmethod
    def workerPython() -> str:
        """Slicer's Python launcher (PythonSlicer), the interpreter the worker runs in; never Slicer itself."""
        return deps.worker_python()

    def _denseChosen(self) -> bool:
        p = self.getParameterNode() if hasattr(self, "getParameterNode") else None
        return bool(p and (p.denseMatching or p.outputTransform or p.warpMoving))

    def dependencyProblems(self, server: bool = False, dense: bool | None = None) -> list[str]:
        """What stops a run with these options (empty: ready).

        Args:
            server: the run goes to a MedDIFT server (only its HTTP client is needed here).
            dense: the run uses the dense registration; None: as the panel's options say.
        """
        if server:
            return [f"{m} is not installed" for m in deps.missing_modules(deps.SERVER_MODULES)]
        return deps.dependency_problems(REQUIREMENTS_FILE, self._denseChosen() if dense is None else dense)

    @classmethod
    def selfTestSkipReason(cls) -> str | None:
        """Why the self-test cannot run here (torch or MONAI missing or unusable), or None."""
        problems = deps.dependency_problems(REQUIREMENTS_FILE, dense=False)
        if not problems:
            return None
        return (
            "MedDIFT's self-test needs torch and MONAI in Slicer's Python; nothing is installed in testing "
            "mode: " + "; ".join(problems)
        )

    def installDependencies(self, server: bool = False, dense: bool = False) -> list[str]:
        """Install what is missing without any dialog; returns what is still missing (empty: ready).
        torch through the PyTorch extension, the rest from requirements.txt under a constraints file
        that keeps Slicer's numpy, SimpleITK, VTK (and torch) as they are. ``server``: only what the
        client of a MedDIFT server needs (no torch, no model: the server has those).

        Args:
            server: install only the server client's packages.
            dense: include what the dense registration imports (ConvexAdam).
        """
        modules = deps.SERVER_MODULES if server else tuple(deps.needed_modules(dense))
        missing = deps.missing_modules(modules)
        if not missing:
            return []
        if server:
            return self._pipInstall(deps.SERVER_REQUIREMENTS, lambda: deps.missing_modules(deps.SERVER_MODULES))
        if "torch" in missing:
            try:
                import PyTorchUtils
            except ImportError:
                return [_("torch (install the PyTorch extension in the Extensions Manager and restart Slicer)")]
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if not torchLogic.torchInstalled():
                if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=">=2.8") is None:
                    return deps.missing_modules(modules)
        return self._pipInstall(deps.requirements(REQUIREMENTS_FILE), lambda: deps.missing_modules(modules))

    def _pipInstall(self, reqs: list, still_missing) -> list[str]:
        """pip-install ``reqs`` under the constraints; returns ``still_missing()`` afterwards."""
        folder = tempfile.mkdtemp(prefix="meddift-pip-")
        try:
            constraints = deps.write_constraints(os.path.join(folder, "constraints.txt"))
            deps.pip_install_constrained(slicer.util.pip_install, reqs, constraints)
        except Exception as err:  # pip's own message is in the log; the caller says what is missing
            logging.error(f"MedDIFT: installing {reqs} failed: {err}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return still_missing()

    def ensureDependencies(self, askConfirmation: bool = True, server: bool = False, dense: bool | None = None) -> bool:
        """The GUI's check before a run: asks first, then installs; never installs in testing mode.
        False leaves the reason in :attr:`dependencyMessage` (and an error dialog for a failed install).

        Args:
            askConfirmation: ask before installing (a user's Slicer).
            server: the run goes to a MedDIFT server.
            dense: the run uses the dense registration; None: as the panel's options say.
        """
        self.dependencyMessage = None
        dense = self._denseChosen() if dense is None else dense
        problems = self.dependencyProblems(server, dense)
        if not problems:
            return True
        tooOld = [p for p in problems if "too old for MONAI" in p]
        if tooOld:  # pip must not replace Slicer's torch: the PyTorch extension does
            self.dependencyMessage = _("Not started: {problems}").format(problems="; ".join(tooOld))
            slicer.util.errorDisplay(self.dependencyMessage)
            return False
        if slicer.app.testingEnabled():
            self.dependencyMessage = _("Not started: {problems} (testing mode installs nothing)").format(
                problems="; ".join(problems)
            )
            return False
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _(
                "MedDIFT needs these Python packages: {packages}. Install them now? This can take several minutes."
            ).format(packages="; ".join(problems))
        ):
            self.dependencyMessage = _("Not started: installing {packages} was declined.").format(
                packages="; ".join(problems)
            )
            return False
        slicer.app.setOverrideCursor(qt.Qt.WaitCursor)  # pip takes minutes
        try:
            self.installDependencies(server, dense)
        finally:
            slicer.app.restoreOverrideCursor()
        still = self.dependencyProblems(server, dense)
        if still:
            self.dependencyMessage = _(
                "Installation failed: {problems}. pip's messages are in the Python console."
            ).format(problems="; ".join(still))
            slicer.util.errorDisplay(self.dependencyMessage)
        return not still
