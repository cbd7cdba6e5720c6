"""The module's "Compute on: this computer / server" setting, without Qt.

:class:`ComputeSettings` holds the choice, the server's URL, its token and an optional CA file
(for a server with a self-signed certificate). It is read from and written to any settings
object with ``value(key, default)``, ``setValue(key, value)`` and ``remove(key)`` (Slicer's
``slicer.app.settings()``, a ``QSettings``; a dict-backed stand-in in the tests). The token is
written only when the user ticks "remember the token"; otherwise it lives in this object for
the Slicer session and is removed from the settings on save, so unticking forgets a stored one.

:func:`client_factory` gives the logic what it calls to get a worker client: a local
:class:`~MedDIFTLib.service.client.WorkerClient` or a
:class:`~MedDIFTLib.service.remote_client.RemoteClient`, which offer the same calls, so the job
runner, Cancel and the live click work unchanged on either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from MedDIFTLib.errors import InputError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The only hosts a plain ``http://`` Server URL may name: traffic that never leaves this computer."""
PREFIX = "MedDIFT/"
KEYS = {
    "where": "ComputeOn",
    "url": "ServerURL",
    "ca_file": "ServerCAFile",
    "store_token": "StoreServerToken",
    "token": "ServerToken",
}


@dataclass
class ComputeSettings:
    where: str = "local"  # "local" (this computer) or "server"
    url: str = ""
    token: str = ""  # kept for the session unless store_token
    store_token: bool = False
    ca_file: str = ""

    @classmethod
    def load(cls, settings) -> ComputeSettings:
        def get(key, default=""):
            value = settings.value(PREFIX + KEYS[key], default)
            return default if value is None else value

        store = str(get("store_token", "false")).lower() in ("true", "1")
        return cls(
            where=str(get("where", "local")) or "local",
            url=str(get("url")),
            ca_file=str(get("ca_file")),
            store_token=store,
            token=str(get("token")) if store else "",
        )

    def save(self, settings) -> None:
        settings.setValue(PREFIX + KEYS["where"], self.where)
        settings.setValue(PREFIX + KEYS["url"], self.url)
        settings.setValue(PREFIX + KEYS["ca_file"], self.ca_file)
        settings.setValue(PREFIX + KEYS["store_token"], "true" if self.store_token else "false")
        if self.store_token and self.token:
            settings.setValue(PREFIX + KEYS["token"], self.token)
        else:
            settings.remove(PREFIX + KEYS["token"])

    def check(self) -> None:
        """Refuse a server setting that cannot work, before a job starts, in the panel's words
        (Advanced > Compute on, Server URL, Token, CA file)."""
        if self.where not in ("local", "server"):
            raise InputError(f"'Compute on' must be 'local' or 'server', not {self.where!r}")
        if self.where != "server":
            return
        url = self.url.strip()
        if not url:
            raise InputError("Compute on: server needs the Server URL (Advanced), e.g. https://gpu-box:8765")
        if not url.startswith(("http://", "https://")):
            raise InputError(
                f"Server URL {url!r} must start with https:// (or http:// for a server on this "
                "computer), e.g. https://gpu-box:8765"
            )
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as err:
            raise InputError(f"Server URL {url!r} is not a valid address ({err}); e.g. https://gpu-box:8765") from None
        if not parts.hostname or parts.path.strip("/") or parts.query:
            raise InputError(
                f"Server URL {url!r} must be only the server's address and port, e.g. https://gpu-box:8765"
            )
        if parts.scheme == "http" and parts.hostname.lower() not in LOCAL_HOSTS:
            raise InputError(
                f"Server URL {url!r}: plain http:// is accepted only for a server on this computer "
                "(127.0.0.1, localhost, ::1); to any other computer the token and the scans would "
                f"travel unencrypted: use https://{parts.netloc}"
            )
        if not self.token.strip():
            raise InputError(
                "Compute on: server needs the server's token (Advanced > Token); ask whoever runs the server"
            )
        if self.ca_file and not Path(self.ca_file).is_file():
            raise InputError(
                f"CA file {self.ca_file!r} does not exist; choose the CA certificate (PEM) of the "
                "server, or leave CA file empty for a server with a certificate your system trusts"
            )

    def describe(self) -> str:
        """For the log: where jobs run (never the token)."""
        return "this computer" if self.where == "local" else f"server {self.url}"


def client_factory(
    settings: ComputeSettings, python: str | None = None, env: dict | None = None
) -> Callable[[], object]:
    """What the logic calls for a new client: local worker process or server session."""
    settings.check()
    if settings.where == "local":
        from MedDIFTLib.service.client import WorkerClient

        return lambda: WorkerClient(python=python, env=env() if callable(env) else env)
    from .remote_panel import PanelRemoteClient

    url, token, ca = settings.url.strip(), settings.token.strip(), settings.ca_file or None
    return lambda: PanelRemoteClient(url, token=token, ca_file=ca)


def use_settings(logic, settings: ComputeSettings) -> None:
    """Point the logic at this setting; the next job starts a client of that kind (the current
    worker, if any, is stopped, since its features are of no use to the other). "This computer" is
    the logic's own default (no factory): it starts the worker with the environment of the moment."""
    factory = client_factory(settings, logic.python, logic.env) if settings.where == "server" else None
    settings.check()
    if logic.busy():
        raise InputError("cannot change where MedDIFT computes while a run is in progress; cancel it first")
    logic.shutdown()
    logic.client_factory = factory
