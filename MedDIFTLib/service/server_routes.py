"""The server's routes, one router per resource (see :mod:`.server` for the table of routes).

Each route names what it needs as a dependency of :mod:`.server_requests` (the caller, the
session, the job, the JSON body), so that every check runs before the route's own line of work,
and states its work through :class:`~.server_state.ServerState`.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures' types at run time
import hashlib
import logging
import re
import secrets
from pathlib import Path

import torch
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .protocol import PROTOCOL_VERSION
from .server_access import ApiError
from .server_files import check_outputs
from .server_ops import FILE_NAME, JOB_FILES, OPERATIONS, checked, hu_offset, job_outputs, label, name
from .server_options import session_options
from .server_requests import Body, Caller, FoundJob, Session, State, Wait, reply
from .server_types import ClientSession

log = logging.getLogger("meddift.server")

FORMATS = {"nrrd": ".nrrd", "nii.gz": ".nii.gz", "nii": ".nii", "mha": ".mha"}

sessions = APIRouter(prefix="/v1")
volumes = APIRouter(prefix="/v1/sessions/{sid}/volumes")
jobs = APIRouter(prefix="/v1/sessions/{sid}")
files = APIRouter(prefix="/v1/sessions/{sid}/files")


@sessions.get("/info")
def info(who: Caller, state: State):
    return reply(
        {
            "service": "meddift",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "operations": sorted(OPERATIONS),
            "cuda_available": torch.cuda.is_available(),
            "device": state.engine_defaults.get("device", "auto"),
            "limits": vars(state.limits),
            "auth": state.tokens is not None,
        }
    )


@sessions.post("/sessions")
async def open_session(who: Caller, state: State, body: Body):
    engine, matching, registration = session_options(body)  # every key known, before a session exists
    sess, first = await run_in_threadpool(state.open_session, who, engine, matching, registration)
    log.info("session %s opened by %s", sess.id, who)
    return reply({"session": sess.id, "job": first.id}, 201)


@sessions.delete("/sessions/{sid}")
def close_session(sid: str, sess: Session, state: State):
    state.close_session(sess)
    return reply({"closed": sid})


@volumes.get("")
def list_volumes(sess: Session):
    return reply({"volumes": sorted(sess.volumes)})


@volumes.post("/{vname}/attach")
def attach(vname: str, sess: Session, state: State, body: Body):
    digest = body.get("sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ApiError(400, "'sha256' must be the 64 hex digits of the file's SHA-256", "BadRequest")
    out = state.attach(sess, name(vname), digest, label(body.get("label")), hu_offset(body.get("hu_offset")))
    if out is None:
        raise ApiError(404, "the server holds no volume with this digest: upload its bytes", "NotFound")
    return reply({**out, "deduplicated": True})


@volumes.put("/{vname}")
async def upload(vname: str, request: Request, sess: Session, state: State):
    """``?format=``, ``?hu_offset=``, ``?label=``: the file's format, the scan's HU offset, its name in messages."""
    vname, params = name(vname), request.query_params
    offset = hu_offset(params.get("hu_offset"), from_query=True)
    fmt = params.get("format", "nrrd")
    if fmt not in FORMATS:
        raise ApiError(400, f"unknown format {fmt!r}; send one of {sorted(FORMATS)}", "BadRequest")
    if "json" in request.headers.get("content-type", ""):
        raise ApiError(
            415,
            "send the image file's bytes (application/octet-stream), not JSON: the server "
            "never reads a path on its own disks",
            "BadRequest",
        )
    limit = int(state.limits.max_upload_mb * 1024 * 1024)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, _too_big(int(declared), state.limits.max_upload_mb), "LimitExceeded")
    path = sess.folder / f"upload-{secrets.token_hex(8)}{FORMATS[fmt]}"
    check_outputs(sess.folder, {"upload": path}, sess.folder.glob("upload-*"))
    try:
        digest, size = await _receive(request, path, limit, state.limits.max_upload_mb)
        out = await run_in_threadpool(state.add_upload, sess, vname, path, digest, label(params.get("label")), offset)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return reply({**out, "deduplicated": False, "bytes": size})


async def _receive(request: Request, path: Path, limit: int, limit_mb: float) -> tuple[str, int]:
    """Write the request's bytes to ``path`` as they arrive, cut off past ``limit``: (SHA-256, size)."""
    h, size = hashlib.sha256(), 0
    with open(path, "xb") as f:  # "x": a new file, never one that exists
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, _too_big(size, limit_mb), "LimitExceeded")
            h.update(chunk)
            f.write(chunk)
    if size == 0:
        raise ApiError(400, "the upload is empty: send the bytes of a NRRD, NIfTI or MHA file", "BadRequest")
    return h.hexdigest(), size


def _too_big(size: int, limit_mb: float) -> str:
    return (
        f"the upload is {size / 2**20:.1f} MB or more, over the server's limit (--max-upload-mb {limit_mb:g}); "
        "crop or resample the volume"
    )


@jobs.post("/jobs")
async def submit(sess: Session, state: State, body: Body, wait: Wait):
    op = body.pop("op", None)
    msg = job_outputs(op, checked(op, body, sess.volumes), sess.folder)
    check_outputs(sess.folder, _outputs(op, msg), sess.folder.glob("upload-*"))
    queued = state.submit(sess, op, msg)
    return reply(await run_in_threadpool(state.wait, queued, wait), 202)


def _outputs(op: str, msg: dict) -> dict:
    """The files a job's request would write (``out``, ``warped``, ``inverse``), by request key."""
    keys = ["out" if key == "path" else key for key, _, _ in JOB_FILES.get(op, [])]
    return {k: msg[k] for k in keys if isinstance(msg.get(k), str)}


@jobs.get("/jobs/{jid}")
def job_status(found: FoundJob, state: State, wait: Wait):
    return reply(state.wait(found, wait))


@jobs.post("/jobs/{jid}/cancel")
def cancel_job(found: FoundJob, state: State):
    return reply({"cancelled": state.cancel(found)})


@jobs.post("/cancel")
def cancel_all(sess: Session, state: State):
    return reply({"cancelled": [j.id for j in list(sess.jobs.values()) if state.cancel(j)]})


def _job_file(sess: ClientSession, fname: str, retention_s: float) -> Path:
    path = sess.folder / fname
    if not FILE_NAME.match(fname) or not path.is_file():
        kept = f" (result files are kept {retention_s:g} s: --retention)" if retention_s > 0 else ""
        raise ApiError(404, f"no file {fname!r} in this session{kept}", "NotFound")
    return path


@files.get("/{fname}")
def download(fname: str, sess: Session, state: State):
    path = _job_file(sess, fname, state.limits.retention_s)
    return FileResponse(path, media_type="application/octet-stream", filename=fname)


@files.delete("/{fname}")
def delete_file(fname: str, sess: Session, state: State):
    """Downloaded: not kept until the session closes (a heatmap per live click, fields of GBs)."""
    _job_file(sess, fname, state.limits.retention_s).unlink(missing_ok=True)
    return reply({"deleted": fname})


ROUTERS = (sessions, volumes, jobs, files)

__all__ = ["ROUTERS", "FORMATS"]
