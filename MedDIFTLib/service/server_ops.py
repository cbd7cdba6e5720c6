"""The server's operations: what each job accepts, checked before it is queued, and the files it writes.

A job's fields are checked here, in the request, so that a bad request is answered at once and
not after the jobs ahead of it in the queue. No field is ever a path: the server reads only the
volumes uploaded into the session, and writes only into the session's own folder, under names it
chooses (:func:`job_outputs`); a client downloads those by name (``GET .../files/{name}``).

An operation is one entry of :data:`OPERATIONS` and one ``cmd_`` method of the
:class:`~MedDIFTLib.service.worker.Worker`, which runs it on the server as in the local worker.
"""

from __future__ import annotations

import math
import re
import secrets
from pathlib import Path

from ..errors import InputError
from ..options import PRIOR_NAMES, RegistrationOptions, is_named_prior
from .server_access import ApiError

OPERATIONS = {
    # op: fields checked before the job is queued (name -> kind; "?" optional)
    "extract": {"name": "volume"},
    # "mask": a volume of the session (uploaded like a scan), candidates only where it is > 0
    "match": {
        "fixed": "volume",
        "moving": "volume",
        "points": "points",
        "labels": "labels?",
        "prior": "prior?",
        "mask": "volume?",
    },
    "heatmap": {"fixed": "volume", "moving": "volume", "point": "point"},
    # the dense fixed -> moving displacement field; "warped"/"inverse": also write those (flags here,
    # paths in the local worker's command), downloadable from the job's result
    "register": {
        "fixed": "volume",
        "moving": "volume",
        "warped": "flag?",
        "inverse": "flag?",
        "options": "registration?",
        "initial": "matrix?",
    },
}
JOB_FILES: dict[str, list[tuple[str, str | None, str]]] = {
    # op -> (result key the worker fills with a path, request flag or None: always, file prefix)
    "heatmap": [("path", None, "heatmap")],
    "register": [("path", None, "field"), ("warped", "warped", "warped"), ("inverse", "inverse", "inverse")],
}
"""The files each operation writes: the worker's request key, where the server puts a path of its own."""
FILE_NAME = re.compile(r"^(heatmap|field|warped|inverse)-([0-9a-f]{12})\.nrrd$")
"""A job result file: its kind, and the random part it shares with the other files of its job."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
HU_OFFSET_MAX = 100000.0
"""The largest HU offset accepted (in magnitude): a CT's rescale intercept is -1024 or -32768 at most."""


def job_outputs(op: str, msg: dict, folder: Path) -> dict:
    """The worker's request with the paths of the files it writes: in ``folder``, named by the server
    (a flag of the client's request becomes that file's path; a false flag is dropped). A job's files
    share one random part (``field-<id>.nrrd``, ``warped-<id>.nrrd``): they are one set, written
    together by the worker (:class:`~MedDIFTLib.outputs.OutputSet`) and kept or expired together
    (:func:`~MedDIFTLib.service.server_files.expire_results`)."""
    msg = dict(msg)
    job = secrets.token_hex(6)
    for key, flag, prefix in JOB_FILES.get(op, []):
        wanted = True if flag is None else msg.pop(flag, None) is True
        if wanted:
            msg["out" if key == "path" else key] = str(folder / f"{prefix}-{job}.nrrd")
    return msg


def public_result(op: str, result: dict) -> dict:
    """The job's result with each server path replaced by its file name (``path`` -> ``file``,
    ``warped`` -> ``warped_file``, ...): where it lies on the server's disk is nobody's business."""
    for key, _, _ in JOB_FILES.get(op, []):
        if isinstance(result.get(key), str):
            result["file" if key == "path" else f"{key}_file"] = Path(result.pop(key)).name
    return result


def checked(op, body: dict, volumes) -> dict:
    """The job's fields, checked (ApiError 400/404 naming the field); ``volumes``: the session's names."""
    if op not in OPERATIONS:
        raise ApiError(400, f"unknown operation {op!r}; known: {', '.join(sorted(OPERATIONS))}", "BadRequest")
    spec = OPERATIONS[op]
    for key in ("out", "path"):
        if key in body:
            raise ApiError(
                400,
                f"'{key}': the server never reads or writes a path a client names; upload volumes "
                "as bytes and download results from the job's files",
                "BadRequest",
            )
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise ApiError(400, f"unknown field(s) {unknown} for {op!r}; expected {sorted(spec)}", "BadRequest")
    for key, kind in spec.items():
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        value = body.get(key)
        if value is None:
            if optional:
                continue
            raise ApiError(400, f"{op!r} needs {key!r}", "BadRequest")
        _check_field(key, kind, value, body, volumes)
    return dict(body)


def _check_field(key: str, kind: str, value, body: dict, volumes) -> None:
    def bad(text: str):
        raise ApiError(400, f"{key!r} {text}", "BadRequest")

    if kind == "volume":
        if not isinstance(value, str) or value not in volumes:
            raise ApiError(
                404 if isinstance(value, str) else 400,
                f"{key!r}: no volume {value!r} in this session (loaded: {sorted(volumes)})",
                "NotFound" if isinstance(value, str) else "BadRequest",
            )
    elif kind == "points":
        if not isinstance(value, list) or not all(_is_point(p, allow_null=True) for p in value):
            bad("must be a list of [x, y, z] RAS millimetres")
    elif kind == "point":
        if not _is_point(value):
            bad("must be [x, y, z] RAS millimetres")
    elif kind == "labels":
        if (
            not isinstance(value, list)
            or not all(isinstance(v, str) for v in value)
            or len(value) != len(body.get("points") or [])
        ):
            bad("must be one string per point")
    elif kind == "prior":
        if not (is_named_prior(value) or _is_matrix(value)):
            bad(
                f"must be {', '.join(map(repr, PRIOR_NAMES))} or a 4x4 RAS matrix (a transform file on the server "
                "is never read)"
            )
    elif kind == "matrix":
        if not _is_matrix(value):
            bad("must be a 4x4 RAS matrix (a transform file on the server is never read)")
    elif kind == "flag":
        if not isinstance(value, bool):
            bad("must be true or false")
    elif kind == "registration":
        registration_options(value, key)


def registration_options(value, key: str = "registration") -> RegistrationOptions:
    """RegistrationOptions from a request's object, refused (400) when a field is unknown or out of range:
    checked in the request, not after the queue."""
    if not isinstance(value, dict):
        raise ApiError(400, f"{key!r} must be an object of registration options", "BadRequest")
    try:
        return RegistrationOptions.from_dict(value)
    except InputError as err:
        raise ApiError(400, f"{key!r}: {err}", "BadRequest") from err


def name(value) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ApiError(400, f"volume name {value!r} must be 1-64 letters, digits, '.', '_' or '-'", "BadRequest")
    return value


def label(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise ApiError(400, "'label' must be a string of at most 200 characters", "BadRequest")
    return value


def hu_offset(value, from_query: bool = False) -> float:
    """A scan's HU offset from a request (0 when absent): a finite number of at most
    :data:`HU_OFFSET_MAX` in magnitude, refused (400) in the request, before any upload is read.
    ``from_query``: the text of a query parameter (``PUT .../volumes/{name}?hu_offset=-1024``)."""
    if value is None:
        return 0.0
    shown = value
    if from_query:
        try:
            value = float(value)
        except ValueError:
            value = None
    if not _is_number(value) or not math.isfinite(value) or abs(value) > HU_OFFSET_MAX:
        raise ApiError(
            400,
            f"'hu_offset' must be a finite number of HU between {-HU_OFFSET_MAX:g} and "
            f"{HU_OFFSET_MAX:g} (for a CT stored without its rescale: -1024), got {shown!r}",
            "BadRequest",
        )
    return float(value)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)  # NaN: a point without a position


def _is_point(p, allow_null: bool = False) -> bool:
    if not isinstance(p, list) or len(p) != 3:
        return False
    return all(_is_number(x) or (allow_null and x is None) for x in p)


def _is_matrix(m) -> bool:
    return (
        isinstance(m, list)
        and len(m) == 4
        and all(isinstance(r, list) and len(r) == 4 and all(_is_number(x) and math.isfinite(x) for x in r) for r in m)
    )


__all__ = [
    "OPERATIONS",
    "JOB_FILES",
    "FILE_NAME",
    "checked",
    "job_outputs",
    "public_result",
    "registration_options",
    "name",
    "label",
    "hu_offset",
    "HU_OFFSET_MAX",
]
