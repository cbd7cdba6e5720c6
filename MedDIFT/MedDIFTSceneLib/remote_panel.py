"""A MedDIFT server client whose errors speak the panel's language, without Qt.

The engine's :class:`~MedDIFTLib.service.remote_client.RemoteClient` words its errors for the
``meddift`` command (``--ca-file``, ``--token-file``, ``--max-sessions``) and reports an address
that is not a MedDIFT server as its bare HTTP status ("HTTP 404"). In Slicer the user has no
command line: they have the *Compute on* fields of the Advanced section. :class:`PanelRemoteClient`
is the same client with each failure re-worded for those fields; the error's class and ``kind``
stay, so the logic treats it exactly as before (a crashed server still leaves the scene as it was).
"""

from __future__ import annotations

import re

from MedDIFTLib.service.client import WorkerCrashed, WorkerError
from MedDIFTLib.service.remote_client import RemoteClient

INFO_ROUTE = "/v1/info"
CLI_ADVICE = (
    (re.compile(r"\s*\(meddift: --token-file F or MEDDIFT_TOKEN\)"), ""),
    (re.compile(r"give its CA file \(--ca-file\)"), "choose its CA certificate in Advanced > CA file"),
    (re.compile(r"\s*\(--[a-z-]+(?: [^)]*)?\)"), " (a limit set by whoever runs the server)"),
)
"""Command-line advice in the server's and client's messages, and what the panel says instead."""


def not_a_server(url: str, detail: str) -> str:
    """The message for an address that answers HTTP but is not a MedDIFT server.

    Args:
        url: the Server URL of the panel.
        detail: what the address answered.
    """
    return (
        f"{url} answers, but it is not a MedDIFT server ({detail}); check the Server URL in "
        "Advanced > Compute on: it is the address and port 'meddift serve' printed when it started"
    )


def panel_words(message: str, kind: str, url: str) -> str:
    """``message`` of a failed request to ``url`` as the panel says it.

    Args:
        message: the error text from the server or the client.
        kind: the error's kind: the server's class name, or ``HTTP<status>`` when the answer
            carried no MedDIFT error (a web server that is not MedDIFT).
        url: the Server URL of the panel.
    """
    if kind.startswith("HTTP"):
        status = kind[4:] or "?"
        return not_a_server(url, f"it answered HTTP {status}, not a MedDIFT reply")
    if kind == "Unauthorized":
        return (
            f"the MedDIFT server at {url} refused the token: check Advanced > Token (ask whoever runs the "
            "server for it)"
        )
    for pattern, words in CLI_ADVICE:
        message = pattern.sub(words, message)
    return message


class PanelRemoteClient(RemoteClient):
    """:class:`RemoteClient` with the panel's wording (see the module docstring)."""

    def _call(self, method: str, route: str, *args, **kwargs):
        try:
            reply = super()._call(method, route, *args, **kwargs)
        except WorkerError as err:
            raise WorkerError(panel_words(str(err), err.kind, self.url), err.kind) from err
        except WorkerCrashed as err:
            raise WorkerCrashed(panel_words(str(err), "WorkerCrashed", self.url)) from err
        if route == INFO_ROUTE and not (isinstance(reply, dict) and "protocol" in reply):
            raise WorkerError(not_a_server(self.url, f"its {INFO_ROUTE} is not MedDIFT's"), "NotAMedDIFTServer")
        return reply
