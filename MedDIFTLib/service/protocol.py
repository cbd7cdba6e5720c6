"""The worker protocol: one JSON object per line, and its codec (the one place that encodes and
decodes its messages; the worker and the client both use it).

The worker (``python -m MedDIFTLib.service.worker``) speaks:

requests on stdin::

    {"id": 1, "cmd": "configure", "engine": {...}, "matching": {...}}
    {"id": 2, "cmd": "load_volume", "name": "fixed", "path": "/tmp/f.nrrd", "label": "CT inhale"}
    {"id": 3, "cmd": "extract", "name": "fixed"}
    {"id": 4, "cmd": "match", "fixed": "fixed", "moving": "moving",
               "points": [[x, y, z], ...], "labels": [...], "prior": null}
    {"id": 5, "cmd": "heatmap", "fixed": "fixed", "moving": "moving", "point": [x, y, z], "out": "/tmp/h.nrrd"}
    {"id": 6, "cmd": "cancel"}        {"id": 7, "cmd": "shutdown"}

replies and events on stdout::

    {"id": 3, "event": "progress", "stage": "vae encode", "fraction": 0.0}
    {"id": 3, "ok": true, "result": {...}}
    {"id": 4, "ok": false, "error": "plain words", "kind": "InputError"}

(``configure`` takes the fields of :class:`~MedDIFTLib.options.EngineOptions`, ``MatchOptions`` and
``RegistrationOptions`` as objects, unknown keys refused; it replies ``backbone``, ``note``, ``device``,
``cuda_available``, ``warnings`` and ``warning_templates`` about options that do not apply, built by
:func:`~MedDIFTLib.service.worker.configure_reply` for the worker and the server alike;
``label``, optional, is the user's name for the volume, used in messages; ``hu_offset``,
optional, is added to that volume's voxels (a CT stored without its rescale: -1024); ``mask``,
optional in ``match``, names a loaded volume: candidates only where it is > 0 (resampled onto the
moving scan); a ``match`` result carries ``warnings``: plain sentences about doubtful inputs, with options named
as request fields, and ``warning_templates``, the same with options marked neutrally for a client
to name in its own words (``errors.render``). An error reply adds ``template`` and ``hints``
(``[{"option": ..., "value": ...}]``) likewise. ``heatmap`` never writes over a loaded volume's
file, and over an existing file only with ``"force": true``.)

Requests run one at a time in order; ``cancel`` and ``ping`` are answered at
once, even while a job runs (cancel takes effect between stages; a client
that needs an immediate stop kills the process). Anything the libraries print
goes to stderr, never into the protocol stream.

The first line is always the ``ready`` event with ``protocol``: :data:`PROTOCOL_VERSION`. The
client refuses a worker that speaks another version (an engine folder from another release on
the worker's path), instead of failing later on a message it misreads.
"""

from __future__ import annotations

import json

import numpy as np

PROTOCOL_VERSION = 1
CONTROL_COMMANDS = ("cancel", "ping")
SCORES = ("similarity", "confidence", "margin", "fb_error_mm", "fb_flag", "argmax_gap_mm")
"""The per-point values of a ``match`` result, as :class:`~MedDIFTLib.session.MatchReport` has them
(``fb_flag``: 1 where the match does not lead back, NaN where not checked; ``argmax_gap_mm`` only
with the dense prior)."""


def dumps(obj) -> str:
    """One protocol line. Strict JSON (no NaN); a request may have carried a NaN id, which is echoed as null."""
    try:
        return json.dumps(obj, allow_nan=False, default=jsonable)
    except ValueError:
        return json.dumps(finite(obj), allow_nan=False, default=jsonable)


def finite(obj):
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def jsonable(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def loads(line: str) -> dict:
    """One protocol line as a message; ValueError when it is not a JSON object."""
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise ValueError("a request must be a JSON object")
    return msg


def protocol_mismatch(ready: dict) -> str | None:
    """None when the ``ready`` message speaks this protocol, else a sentence saying what differs."""
    theirs = ready.get("protocol")
    if theirs == PROTOCOL_VERSION:
        return None
    return (
        f"the worker speaks protocol {theirs!r} (MedDIFT {ready.get('version', '?')}) but this module speaks "
        f"{PROTOCOL_VERSION}: the engine folder on the worker's path is from another release"
    )


def encode_match(points, labels, values: dict, warnings) -> dict:
    """A ``match`` result: labels, points (null for points without a position), one list per
    score (null where it is NaN) and the warnings."""
    pts = np.asarray(points, dtype=np.float64)
    return {
        "labels": list(labels),
        # numpy's stubs do not take None; at run time it makes an object array with None for NaN
        "points": np.where(np.isnan(pts), None, pts).tolist(),  # type: ignore[call-overload]
        "warnings": list(warnings),
        **{k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in values.items()},
    }


def decode_match(result: dict) -> tuple[np.ndarray, list, dict, list]:
    """The inverse of :func:`encode_match`: (points (N, 3) with NaN rows, labels, {score: array}, warnings)."""
    pts = np.array([[np.nan] * 3 if p is None else p for p in result["points"]], dtype=float).reshape(-1, 3)
    values = {k: np.array([np.nan if v is None else v for v in result[k]], dtype=float) for k in SCORES if k in result}
    return pts, list(result["labels"]), values, list(result.get("warnings") or [])
