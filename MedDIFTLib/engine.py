"""One engine interface for every front end, and its local implementation.

A front end (the ``meddift`` commands) asks an :class:`Engine` to configure, match, draw a
heatmap and register; it does not know whether a :class:`LocalEngine` (a
:class:`~MedDIFTLib.session.MatchSession` in this process) or a
:class:`~MedDIFTLib.service.remote_engine.RemoteEngine` (a ``meddift serve`` machine) answers, so
every check, message and output of a command is written once, in its one ``run``.

Scans are named by their files (:class:`Scan`): a remote engine uploads them, a local one reads
them (or takes the volume the front end has already read for its own checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .data.geometry import Volume
from .data.image_io import _stem as file_stem  # the reader's own default name of a volume
from .data.image_io import read_volume, write_volume
from .data.points import PointSet
from .matching.priors import resolve_prior
from .options import EngineOptions, MatchOptions, RegistrationOptions
from .registration.outputs import write_outputs
from .runtime import Progress
from .session import MatchReport, MatchSession


@dataclass(frozen=True)
class Scan:
    """A scan by its file, with its own HU offset; ``volume``: the same file already read here (with
    that offset), which a local engine uses as is."""

    path: str
    hu_offset: float = 0.0
    volume: Volume | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """The scan's name in messages and reports: what a local read calls it."""
        return file_stem(Path(self.path))


@dataclass
class EngineInfo:
    """What a configured engine says about itself (a configure reply)."""

    backbone: str
    note: str
    device: str
    warnings: list = field(default_factory=list)  # option warnings, neutral templates (errors.render)
    place: str = "this machine"  # or the server's URL


@dataclass
class Registration:
    """What :meth:`Engine.register` wrote: {what: path}, and the report (``registration.json``)."""

    written: dict
    report: dict


class Engine(Protocol):
    """The jobs a front end asks for; every method raises :class:`~MedDIFTLib.errors.MedDIFTError`
    in the user's terms."""

    def configure(
        self, engine: EngineOptions, matching: MatchOptions, registration: RegistrationOptions | None = None
    ) -> EngineInfo:
        """Choose the backbone and options (every option checked); says what runs."""

    def prior(self, spec: str | None) -> Any:
        """``--prior`` as this engine takes it, refused in words before any work."""

    def match(
        self, fixed: Scan, moving: Scan, points: PointSet, prior: Any = None, mask: Scan | None = None
    ) -> MatchReport:
        """The matched points (every row of ``points``) and the warnings, as neutral templates."""

    def heatmap(self, fixed: Scan, moving: Scan, point_ras: np.ndarray, out: Path, force: bool = False) -> Path:
        """The similarity of one fixed point to every moving voxel, written to ``out``."""

    def register(
        self,
        fixed: Scan,
        moving: Scan,
        options: RegistrationOptions,
        initial: np.ndarray | None,
        out_dir: Path,
        field_ext: str = ".nii.gz",
        figure: bool = True,
        force: bool = False,
    ) -> Registration:
        """The dense fixed -> moving map, written as ``meddift register`` writes it."""

    def close(self) -> None:
        """Release what the engine holds (a server session)."""


class LocalEngine:
    """The :class:`Engine` of this process: a :class:`MatchSession`, its progress on ``progress``."""

    def __init__(self, progress: Progress | None = None):
        self.progress = progress
        self.session: MatchSession | None = None
        self._volumes: dict = {}

    def configure(
        self, engine: EngineOptions, matching: MatchOptions, registration: RegistrationOptions | None = None
    ) -> EngineInfo:
        self.session = MatchSession(engine, matching, registration=registration)
        d = self.session.describe()
        return EngineInfo(d["backbone"], d["note"], d["device"], d["warning_templates"])

    def prior(self, spec: str | None) -> Any:
        """None (no ``--prior``) stays None: the session's own default decides (the dense map), as it does
        for the worker and the server; anything else is resolved here, so that a file is read once."""
        if spec in (None, ""):
            return None
        return resolve_prior(spec, self._session().matching.radius_mm)

    def volume(self, scan: Scan) -> Volume:
        """The scan read once (or as the front end read it)."""
        if scan.volume is not None:
            return scan.volume
        key = (scan.path, float(scan.hu_offset or 0.0))
        if key not in self._volumes:
            self._volumes[key] = read_volume(scan.path, hu_offset=scan.hu_offset)
        return self._volumes[key]

    def match(
        self, fixed: Scan, moving: Scan, points: PointSet, prior: Any = None, mask: Scan | None = None
    ) -> MatchReport:
        f, m = self.volume(fixed), self.volume(moving)
        mask_volume = self.volume(mask) if mask is not None else None
        return self._session().match(f, m, points, prior=prior, mask=mask_volume, progress=self.progress)

    def heatmap(self, fixed: Scan, moving: Scan, point_ras: np.ndarray, out: Path, force: bool = False) -> Path:
        hm = self._session().heatmap(self.volume(fixed), self.volume(moving), point_ras)
        return write_volume(hm, out, force=force)

    def register(
        self,
        fixed: Scan,
        moving: Scan,
        options: RegistrationOptions,
        initial: np.ndarray | None,
        out_dir: Path,
        field_ext: str = ".nii.gz",
        figure: bool = True,
        force: bool = False,
    ) -> Registration:
        f, m = self.volume(fixed), self.volume(moving)
        dense = self._session().register(f, m, options, initial=initial, progress=self.progress)
        written = write_outputs(dense, f, m, out_dir, field_ext, figure=figure, force=force)
        report = written.pop("report_data")
        return Registration(written, report)

    def close(self) -> None:
        self.session, self._volumes = None, {}

    def _session(self) -> MatchSession:
        if self.session is None:
            raise RuntimeError("configure the engine first")
        return self.session


__all__ = ["Engine", "EngineInfo", "LocalEngine", "Registration", "Scan"]
