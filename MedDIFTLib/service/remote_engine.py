"""The :class:`~MedDIFTLib.engine.Engine` of a ``meddift serve`` machine: the same jobs and the same
output files as a :class:`~MedDIFTLib.engine.LocalEngine`, computed there.

The scans (with their HU offsets, applied by the server) and a mask go up as bytes, through the
client the Slicer module uses (:class:`~MedDIFTLib.service.remote_client.RemoteClient`); results
come down into a temporary folder and are put in place under the output rules of a local run
(exclusive without ``force``, atomic with it). A prior that is a transform file becomes its 4x4
matrix here: the server never reads a path a client names.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..data.image_io import is_itk_transform_text, read_matrix_file, read_volume, write_volume
from ..data.points import PointSet
from ..engine import EngineInfo, Registration, Scan
from ..errors import InputError
from ..options import SERVER_OWNED_ENGINE_KEYS, EngineOptions, MatchOptions, RegistrationOptions, is_named_prior
from ..outputs import OutputSet
from ..registration.outputs import _figure as draw_figure  # the local run's own drawing
from ..registration.outputs import output_set
from ..runtime import Progress
from ..session import MatchReport
from .protocol import decode_match
from .remote_client import RemoteClient


def wire_prior(spec: str | None) -> Any:
    """What a ``--prior`` becomes on the wire: a name the server knows, or a 4x4 matrix read here.

    Args:
        spec: the prior as given: None, a prior name, or a file.
    """
    if spec in (None, "") or is_named_prior(spec):
        return spec or None
    path = Path(str(spec))
    if path.suffix.lower() == ".npy" or (
        path.suffix.lower() == ".txt" and path.is_file() and not is_itk_transform_text(path)
    ):
        return read_matrix_file(path, "a prior matrix").tolist()
    raise InputError(
        f"--prior {spec}: with --server only identity, coarse, dense or a 4x4 RAS matrix file "
        "(.txt/.npy) can be used; run without --server for ITK transforms and displacement fields"
    )


class RemoteEngine:
    """A session on the server at ``url``, opened by :meth:`configure`, closed by :meth:`close`."""

    def __init__(
        self, url: str, token: str | None = None, ca_file: str | None = None, progress: Progress | None = None
    ):
        self.url, self.progress = url, progress
        self.client = RemoteClient(url, token=token, ca_file=ca_file)
        self._loaded: dict = {}  # name -> (path, hu_offset, extracted)

    def _on_event(self, msg: dict) -> None:
        if msg.get("event") == "progress" and self.progress is not None:
            self.progress(msg["stage"], msg["fraction"])

    def _request(self, cmd: str, **fields):
        return self.client.request(cmd, self._on_event, **fields)

    def configure(
        self, engine: EngineOptions, matching: MatchOptions, registration: RegistrationOptions | None = None
    ) -> EngineInfo:
        self.client.start(timeout=60)
        wanted = {k: v for k, v in engine.to_dict().items() if k not in SERVER_OWNED_ENGINE_KEYS}
        conf = self._request(
            "configure",
            engine=wanted,
            matching=matching.to_dict(),
            registration=None if registration is None else registration.to_dict(),
        )
        self._loaded = {}
        return EngineInfo(
            conf["backbone"], conf["note"], conf["device"], list(conf.get("warning_templates") or []), place=self.url
        )

    def prior(self, spec: str | None) -> Any:
        return wire_prior(spec)

    def _load(self, name: str, scan: Scan, extract: bool = False) -> None:
        """The scan onto the server once (not sent again when it holds the same bytes), with its own HU
        offset; its features computed when ``extract``."""
        key = (scan.path, float(scan.hu_offset or 0.0))
        done = self._loaded.get(name)
        if done is None or done[0] != key:
            self._request(
                "load_volume", name=name, path=str(scan.path), label=scan.label, hu_offset=float(scan.hu_offset or 0.0)
            )
            done = self._loaded[name] = (key, False)
        if extract and not done[1]:
            self._request("extract", name=name)
            self._loaded[name] = (key, True)

    def match(
        self, fixed: Scan, moving: Scan, points: PointSet, prior: Any = None, mask: Scan | None = None
    ) -> MatchReport:
        if mask is not None:  # first: a bad one stops the work before the features
            self._load("mask", mask)
        self._load("fixed", fixed, extract=True)
        self._load("moving", moving, extract=True)
        # a point without a position (--skip-outside) goes as [null, null, null] and comes back without one
        sent = [[float(x) if np.isfinite(x) else None for x in p] for p in points.points]
        assert points.labels is not None  # PointSet.__post_init__ sets the labels
        result = self._request(
            "match",
            fixed="fixed",
            moving="moving",
            points=sent,
            labels=list(points.labels),
            prior=prior,
            mask="mask" if mask is not None else None,
        )
        pts, labels, values, warnings = decode_match(result)
        templates = result.get("warning_templates")
        matched = PointSet(pts, labels, values, name=f"{points.name or 'landmarks'} matched")
        return MatchReport(matched, list(templates) if templates is not None else warnings)

    def heatmap(self, fixed: Scan, moving: Scan, point_ras: np.ndarray, out: Path, force: bool = False) -> Path:
        self._load("fixed", fixed, extract=True)
        self._load("moving", moving, extract=True)
        with tempfile.TemporaryDirectory(prefix="meddift-heatmap-") as tmp:
            local = Path(tmp) / "heatmap.nrrd"
            self._request(
                "heatmap", fixed="fixed", moving="moving", point=[float(x) for x in point_ras], out=str(local)
            )
            return write_volume(read_volume(local), out, force=force)

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
        targets, members, labels = output_set(out_dir, field_ext, figure)
        self._load("fixed", fixed)  # register computes the features it needs
        self._load("moving", moving)
        with tempfile.TemporaryDirectory(prefix="meddift-register-") as tmp:
            local = {key: Path(tmp) / targets[key].name for key in ("field", "inverse_field", "moving_resampled")}
            result = self._request(
                "register",
                fixed="fixed",
                moving="moving",
                options=options.to_dict(),
                initial=None if initial is None else np.asarray(initial, dtype=float).tolist(),
                out=str(local["field"]),
                inverse=str(local["inverse_field"]),
                warped=str(local["moving_resampled"]),
            )
            report = result["report"]
            inputs = {"the fixed volume": fixed.path, "the moving volume": moving.path}
            with OutputSet(targets, inputs, force, members, labels) as out:  # one set, as a local run's
                for key, src in local.items():
                    shutil.copyfile(src, out.path(key))
                out.path("report").write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
                if "figure" in targets:
                    draw_figure(
                        read_volume(fixed.path, hu_offset=fixed.hu_offset),
                        read_volume(moving.path, hu_offset=moving.hu_offset),
                        read_volume(local["moving_resampled"]),
                        out.path("figure"),
                        force=True,
                    )
                written = dict(out.commit())
        return Registration(written, report)

    def close(self) -> None:
        self.client.stop()


__all__ = ["RemoteEngine", "wire_prior"]
