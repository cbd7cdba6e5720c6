"""The two kinds of work a batch runs on Ray workers: extract one scan, match one pair.

Plain functions (no Ray here), so they run and are tested the same in a worker, a thread or a
plain loop. They go through :class:`~MedDIFTLib.session.MatchSession` exactly as ``meddift
match`` does, so a pair's result is the one the single-pair command gives.

Pyramids travel through the feature cache on storage the workers share (``--cache-dir``), not
through Ray's object store: a cached pyramid outlives the run (a restart after a crash does not
encode again, the object store is gone with its driver), it is memory-mapped rather than
copied into every worker that reads it (MAISI pyramids of a 512^3 CT are hundreds of MB), and
the cache already checks each file against its key. A matching task that finds a pyramid
missing (storage not shared between nodes) extracts it itself and says so in its record.

Expected failures (an unreadable scan, bad landmarks: :class:`MedDIFTError`) come back as
``{"ok": False, "error": ...}`` and are not retried, since trying again cannot help. Anything
else (a worker killed, an OSError on shared storage) raises, and Ray retries it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MedDIFTError

if TYPE_CHECKING:  # the session and data modules are imported by the tasks themselves (workers load them lazily)
    from ..data.geometry import Volume
    from ..data.points import PointSet
    from ..session import MatchReport, MatchSession

FIELD = "field.nii.gz"
"""A dense pair's displacement field, in its folder."""
TASK_FIELD = ".task.field.nii.gz"
"""Where a matching task leaves the field for the driver (a name the pair's set owns)."""
_SESSIONS: dict = {}  # per worker process: options -> MatchSession (the model stays loaded between tasks)


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def session_for(engine: dict, matching: dict):
    """One session per worker and options: MAISI's weights are loaded once per worker, not per task."""
    from ..matching.search import MatchOptions
    from ..session import EngineOptions, MatchSession

    key = json.dumps([engine, matching], sort_keys=True, default=str)
    if key not in _SESSIONS:
        _SESSIONS.clear()  # another cohort's options: free the previous model
        _SESSIONS[key] = MatchSession(EngineOptions.from_dict(engine), MatchOptions(**matching))
    session = _SESSIONS[key]
    session.forget()  # pyramids live in the disk cache, not in a long-lived worker's memory
    return session


def _cache_state(session, volume) -> tuple[str, bool]:
    """The pyramid's cache key for this volume and whether the cache holds it already."""
    from ..data.digest import volume_digest
    from ..features.cache import cache_key

    key = cache_key(volume_digest(volume), session.registration_backbone().identity())  # what features() caches
    return key, session.cache.path_for(key).exists()


def extract_scan(path: str, digest: str, engine: dict, matching: dict) -> dict:
    """Read one scan and put its pyramid in the feature cache; ``encoded`` says whether this task
    computed it (False: a previous run or task had)."""
    from ..data.image_io import read_volume

    t0 = time.time()
    try:
        session = session_for(engine, matching)
        volume = read_volume(path)
        key, cached = _cache_state(session, volume)
        session.features(volume)
        session.forget()
    except MedDIFTError as err:
        return {"ok": False, "digest": digest, "path": path, "error": str(err), "seconds": time.time() - t0}
    return {
        "ok": True,
        "digest": digest,
        "path": path,
        "cache_key": key,
        "encoded": not cached,
        "backbone": session.backbone.name,
        "note": session.backbone_note,
        "seconds": round(time.time() - t0, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


def _failure(pair: dict, error: str, t0: float) -> dict:
    return {
        "ok": False,
        "id": pair["id"],
        "error": error,
        "seconds": round(time.time() - t0, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


def match_pair(
    pair: dict,
    fixed_info: dict,
    moving_info: dict,
    engine: dict,
    matching: dict,
    mode: str,
    prior_spec: str | None = None,
    out_dir: str | None = None,
) -> dict:
    """Match one pair with the pyramids its two extractions cached. Returns the matched points as
    arrays (the driver writes the files), the warnings, time and memory."""
    from ..data.image_io import read_volume
    from ..data.landmark_io import read_points

    t0 = time.time()
    for role, info in (("fixed", fixed_info), ("moving", moving_info)):
        if not info.get("ok"):
            return _failure(pair, f"{role} scan {info.get('path')}: {info.get('error')}", t0)
    try:
        session = session_for(engine, matching)
        fixed, moving = read_volume(pair["fixed"]), read_volume(pair["moving"])
        reencoded = [role for role, vol in (("fixed", fixed), ("moving", moving)) if not _cache_state(session, vol)[1]]
        points = read_points(pair["points"])
        outputs: dict = {}
        if mode == "dense":
            result = _match_dense(session, fixed, moving, points, out_dir, outputs)
        else:
            result = _match_with_prior(session, fixed, moving, points, pair.get("prior") or prior_spec)
        session.forget()
    except MedDIFTError as err:
        return _failure(pair, str(err), t0)
    result.update(
        ok=True,
        id=pair["id"],
        name=f"{pair['id']} matched",
        fixed_points=points.points,
        reencoded=reencoded,
        outputs=outputs,
        backbone=session.backbone.name,
        seconds=round(time.time() - t0, 3),
        peak_rss_mb=peak_rss_mb(),
    )
    return result


def _report_result(report: MatchReport) -> dict:
    """The parts of a match report the driver needs, as plain arrays, lists and dicts (they cross to the driver)."""
    assert report.points.labels is not None  # PointSet.__post_init__ sets the labels
    return {
        "points": report.points.points,
        "labels": list(report.points.labels),
        "values": dict(report.points.values),
        "warnings": list(report.warnings),
    }


def _match_dense(
    session: MatchSession, fixed: Volume, moving: Volume, points: PointSet, out_dir: str | None, outputs: dict
) -> dict:
    """Dense mode: the pair's field is written for the driver (recorded in ``outputs``), then the points
    come from it; registration is imported here so that a worker loads it only when a cohort is dense."""
    from ..registration import write_field

    field = session.register(fixed, moving)  # the pair's dense map; the points then come from it
    assert out_dir is not None  # the driver passes its folder in dense mode
    target = Path(out_dir) / TASK_FIELD  # the driver puts it in place with the pair's other files
    write_field(field.displacement_on(fixed.grid), fixed.grid, target)
    outputs[FIELD] = str(target)
    return _report_result(session.match(fixed, moving, points, prior="dense"))


def _match_with_prior(session: MatchSession, fixed: Volume, moving: Volume, points: PointSet, spec: str | None) -> dict:
    """Point mode: the pair's own prior (or the cohort's) resolved against the session's search radius."""
    from ..matching.priors import resolve_prior

    prior = resolve_prior(spec, session.matching.radius_mm)
    return _report_result(session.match(fixed, moving, points, prior=prior if prior is not None else "none"))


def pair_payload(pair) -> dict:
    """A :class:`~MedDIFTLib.batch.cohort.Pair` as the plain dict a task receives."""
    d = asdict(pair)
    d.pop("digests", None)
    return d


__all__ = ["extract_scan", "match_pair", "pair_payload", "session_for", "peak_rss_mb"]
