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

from dataclasses import dataclass
from typing import Callable, Optional

from MedDIFTLib.errors import InputError

PREFIX = "MedDIFT/"
KEYS = {"where": "ComputeOn", "url": "ServerURL", "ca_file": "ServerCAFile", "store_token": "StoreServerToken",
        "token": "ServerToken"}


@dataclass
class ComputeSettings:
    where: str = "local"  # "local" (this computer) or "server"
    url: str = ""
    token: str = ""  # kept for the session unless store_token
    store_token: bool = False
    ca_file: str = ""

    @classmethod
    def load(cls, settings) -> "ComputeSettings":
        def get(key, default=""):
            value = settings.value(PREFIX + KEYS[key], default)
            return default if value is None else value

        store = str(get("store_token", "false")).lower() in ("true", "1")
        return cls(where=str(get("where", "local")) or "local", url=str(get("url")), ca_file=str(get("ca_file")),
                   store_token=store, token=str(get("token")) if store else "")

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
        """Refuse a server setting that cannot work, before a job starts."""
        if self.where not in ("local", "server"):
            raise InputError(f"'Compute on' must be 'local' or 'server', not {self.where!r}")
        if self.where == "server":
            if not self.url.startswith(("http://", "https://")):
                raise InputError(f"server URL {self.url!r} must start with https:// (or http:// on this computer)")
            if not self.token:
                raise InputError("enter the server's token (ask whoever runs the server)")

    def describe(self) -> str:
        """For the log: where jobs run (never the token)."""
        return "this computer" if self.where == "local" else f"server {self.url}"


def client_factory(settings: ComputeSettings, python: Optional[str] = None,
                   env: Optional[dict] = None) -> Callable[[], object]:
    """What the logic calls for a new client: local worker process or server session."""
    settings.check()
    if settings.where == "local":
        from MedDIFTLib.service.client import WorkerClient

        return lambda: WorkerClient(python=python, env=env)
    from MedDIFTLib.service.remote_client import RemoteClient

    url, token, ca = settings.url, settings.token, settings.ca_file or None
    return lambda: RemoteClient(url, token=token, ca_file=ca)


def use_settings(logic, settings: ComputeSettings) -> None:
    """Point the logic at this setting; the next job starts a client of that kind (the current
    worker, if any, is stopped, since its features are of no use to the other)."""
    factory = client_factory(settings, logic.python, logic.env)
    if logic.busy():
        raise InputError("cannot change where MedDIFT computes while a run is in progress; cancel it first")
    logic.shutdown()
    logic.client_factory = factory
