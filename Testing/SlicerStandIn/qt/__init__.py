"""Stand-in for PythonQt's ``qt`` module (see ``_core.py`` for why and how it behaves).

Only what MedDIFT's module, its ``.ui`` file and the Slicer Python files it
runs (``slicer.util``, ``ScriptedLoadableModule``, ``parameterNodeWrapper``)
touch; everything else is absent, so a call the stand-in does not know fails
loudly instead of passing.
"""

from ._core import (  # noqa: F401
    BoundSignal,
    Prop,
    QFile,
    QObject,
    QSettings,
    QTimer,
    Signal,
    normalize,
    processEvents,
    slotErrors,
)
from ._inputs import *  # noqa: F401,F403
from ._uiloader import QUiLoader  # noqa: F401
from ._views import *  # noqa: F401,F403
from ._views import answerNextDialog, asked, clearDialogAnswers, stackedDialogs  # noqa: F401
from ._widgets import *  # noqa: F401,F403


class QSysInfo:
    def productType(self):
        import sys

        return "windows" if sys.platform.startswith("win") else sys.platform


class QProcessEnvironment:
    """What ``slicer.app.startupEnvironment()`` returns: keys() and value(key)."""

    def __init__(self, env=None):
        import os

        self._env = dict(os.environ if env is None else env)

    def keys(self):
        return list(self._env)

    def value(self, key, default=""):
        return self._env.get(key, default)

    def insert(self, key, value):
        self._env[key] = value

    @staticmethod
    def systemEnvironment():
        return QProcessEnvironment()
