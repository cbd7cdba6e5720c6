"""``meddift serve``: the worker's operations over HTTP(S), for a Slicer (or script) on another machine.

FastAPI on uvicorn: a small, widely deployed stack with TLS in the server itself (no proxy needed
for a lab), streaming request bodies (uploads are counted as they arrive, never trusted from
``Content-Length`` alone), and a thread pool for the long polls. Every route is under ``/v1``;
every request carries ``X-MedDIFT-Protocol`` (checked first, so a client from another release is
told both versions) and ``Authorization: Bearer <token>`` (unless the server runs ``--no-auth`` on
loopback). Replies are JSON; errors are ``{"error": plain words, "kind": class}`` with a 4xx
status, never a stack trace (those go to the server's log). The routes:

====================================================  =========================================
``GET  /v1/info``                                     version, protocol, device, operations, limits
``POST /v1/sessions``                                 ``{"engine", "matching", "registration"}`` -> session
``DELETE /v1/sessions/{sid}``                         close: cancel its jobs, delete its files
``GET  /v1/sessions/{sid}/volumes``                   this session's volumes (nobody else's)
``POST /v1/sessions/{sid}/volumes/{name}/attach``     ``{"sha256", "hu_offset"}``: use a volume the server holds
``PUT  /v1/sessions/{sid}/volumes/{name}``            the bytes of a NRRD/NIfTI/MHA file (``?hu_offset=``)
``POST /v1/sessions/{sid}/jobs?wait=S``               ``{"op": extract|match|heatmap|register, ...}``
``GET  /v1/sessions/{sid}/jobs/{jid}?wait=S``         status: state, queue position, stage, result
``POST /v1/sessions/{sid}/jobs/{jid}/cancel``         cancel one job; ``/v1/sessions/{sid}/cancel``: all
``GET  /v1/sessions/{sid}/files/{name}``              a file a job wrote (heatmap, displacement field)
``DELETE /v1/sessions/{sid}/files/{name}``            that file, once downloaded
====================================================  =========================================

A volume's ``hu_offset`` (optional, a finite number) is added to its voxels as the local worker's
``load_volume`` does; it is applied after the dedup by digest, so the same bytes with and without
an offset are two volumes (:func:`.server_state.store_key`). A ``match`` job's ``mask`` names a
volume uploaded the same way (a candidate mask on the moving scan, resampled as a local run does).
``wait`` makes a request a long poll: with the features cached, a click is one ``POST .../jobs``.
What each job accepts, and the files it writes, is :mod:`.server_ops`.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures' types at run time
import hashlib
import json
import logging
import math
import re
import secrets
from pathlib import Path
from typing import Optional

from .. import __version__
from .protocol import PROTOCOL_VERSION, dumps
from .server_ops import FILE_NAME, OPERATIONS, checked, hu_offset as _hu_offset, job_outputs, label as _label
from .server_ops import name as _name
from .server_ops import registration_options
from .server_state import ApiError, ServerState

log = logging.getLogger("meddift.server")

FORMATS = {"nrrd": ".nrrd", "nii.gz": ".nii.gz", "nii": ".nii", "mha": ".mha"}


def create_app(state: ServerState):
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="MedDIFT server", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    def reply(obj, status: int = 200):
        return Response(dumps(obj), status_code=status, media_type="application/json")

    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse({"error": str(err), "kind": err.kind}, err.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, err):
        what = "unknown route" if err.status_code == 404 else str(err.detail)
        return JSONResponse({"error": f"{what}: {request.method} {request.url.path} (see GET /v1/info)",
                             "kind": "BadRequest"}, err.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request, err):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal server error; the details are in the server log",
                             "kind": "InternalError"}, 500)

    def caller(request: Request) -> str:
        """The protocol check, then the token: the caller's identity (never the token itself)."""
        theirs = request.headers.get("x-meddift-protocol")
        if theirs != str(PROTOCOL_VERSION):
            raise ApiError(400 if theirs is None else 409,
                           f"this client speaks MedDIFT protocol {theirs or '(none: header X-MedDIFT-Protocol missing)'}"
                           f" but the server (MedDIFT {__version__}) speaks protocol {PROTOCOL_VERSION}: "
                           "use a client from the same release", "ProtocolMismatch")
        if state.tokens is None:
            return "anonymous"
        auth = request.headers.get("authorization", "")
        presented = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        who = state.tokens.identify(presented)
        if who is None:
            raise ApiError(401, "missing or wrong token: send the server's token as 'Authorization: Bearer ...' "
                                "(meddift: --token-file F or MEDDIFT_TOKEN)", "Unauthorized")
        return who

    async def json_body(request: Request) -> dict:
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as err:
            raise ApiError(400, f"malformed JSON in the request body: {err}", "BadRequest") from err
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", "BadRequest")
        return body

    def wait_arg(request: Request) -> float:
        try:
            w = float(request.query_params.get("wait", 0))
        except ValueError as err:
            raise ApiError(400, "'wait' must be a number of seconds", "BadRequest") from err
        return 0.0 if not math.isfinite(w) else w

    @app.get("/v1/info")
    def info(request: Request):
        caller(request)
        import torch

        return reply({"service": "meddift", "version": __version__, "protocol": PROTOCOL_VERSION,
                      "operations": sorted(OPERATIONS), "cuda_available": torch.cuda.is_available(),
                      "device": state.engine_defaults.get("device", "auto"),
                      "limits": vars(state.limits), "auth": state.tokens is not None})

    @app.post("/v1/sessions")
    async def open_session(request: Request):
        who = caller(request)
        body = await json_body(request)
        registration = body.get("registration")
        if registration is not None:
            registration_options(registration)  # refused here, before a session exists
        sess, job = await run_in_threadpool(state.open_session, who, body.get("engine") or {},
                                            body.get("matching") or {}, registration)
        log.info("session %s opened by %s", sess.id, who)
        return reply({"session": sess.id, "job": job.id}, 201)

    @app.delete("/v1/sessions/{sid}")
    def close_session(sid: str, request: Request):
        state.close_session(state.session(sid, caller(request)))
        return reply({"closed": sid})

    @app.get("/v1/sessions/{sid}/volumes")
    def list_volumes(sid: str, request: Request):
        sess = state.session(sid, caller(request))
        return reply({"volumes": sorted(sess.volumes)})

    @app.post("/v1/sessions/{sid}/volumes/{name}/attach")
    async def attach(sid: str, name: str, request: Request):
        sess = state.session(sid, caller(request))
        body = await json_body(request)
        digest, label = body.get("sha256"), body.get("label")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ApiError(400, "'sha256' must be the 64 hex digits of the file's SHA-256", "BadRequest")
        out = state.attach(sess, _name(name), digest, _label(label), _hu_offset(body.get("hu_offset")))
        if out is None:
            raise ApiError(404, "the server holds no volume with this digest: upload its bytes", "NotFound")
        return reply({**out, "deduplicated": True})

    @app.put("/v1/sessions/{sid}/volumes/{name}")
    async def upload(sid: str, name: str, request: Request):
        sess = state.session(sid, caller(request))
        name = _name(name)
        offset = _hu_offset(request.query_params.get("hu_offset"), from_query=True)
        fmt = request.query_params.get("format", "nrrd")
        if fmt not in FORMATS:
            raise ApiError(400, f"unknown format {fmt!r}; send one of {sorted(FORMATS)}", "BadRequest")
        if "json" in request.headers.get("content-type", ""):
            raise ApiError(415, "send the image file's bytes (application/octet-stream), not JSON: the server "
                                "never reads a path on its own disks", "BadRequest")
        limit = int(state.limits.max_upload_mb * 1024 * 1024)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, _too_big(int(declared), state.limits.max_upload_mb), "LimitExceeded")
        path = sess.folder / f"upload-{secrets.token_hex(8)}{FORMATS[fmt]}"
        h, size = hashlib.sha256(), 0
        try:
            with open(path, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(413, _too_big(size, state.limits.max_upload_mb), "LimitExceeded")
                    h.update(chunk)
                    f.write(chunk)
            if size == 0:
                raise ApiError(400, "the upload is empty: send the bytes of a NRRD, NIfTI or MHA file", "BadRequest")
            out = await run_in_threadpool(state.add_upload, sess, name, path, h.hexdigest(),
                                          _label(request.query_params.get("label")), offset)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return reply({**out, "deduplicated": False, "bytes": size})

    @app.post("/v1/sessions/{sid}/jobs")
    async def submit(sid: str, request: Request):
        sess = state.session(sid, caller(request))
        body = await json_body(request)
        op = body.pop("op", None)
        msg = job_outputs(op, checked(op, body, sess.volumes), sess.folder)
        job = state.submit(sess, op, msg)
        return reply(await run_in_threadpool(state.wait, job, wait_arg(request)), 202)

    def find_job(sid, jid, request):
        sess = state.session(sid, caller(request))
        job = sess.jobs.get(jid)
        if job is None:
            raise ApiError(404, f"no job {jid} in this session", "NotFound")
        return job

    @app.get("/v1/sessions/{sid}/jobs/{jid}")
    def job_status(sid: str, jid: str, request: Request):
        return reply(state.wait(find_job(sid, jid, request), wait_arg(request)))

    @app.post("/v1/sessions/{sid}/jobs/{jid}/cancel")
    def cancel_job(sid: str, jid: str, request: Request):
        return reply({"cancelled": state.cancel(find_job(sid, jid, request))})

    @app.post("/v1/sessions/{sid}/cancel")
    def cancel_all(sid: str, request: Request):
        sess = state.session(sid, caller(request))
        return reply({"cancelled": [j.id for j in list(sess.jobs.values()) if state.cancel(j)]})

    def job_file(sid, fname, request) -> Path:
        sess = state.session(sid, caller(request))
        path = sess.folder / fname
        if not FILE_NAME.match(fname) or not path.is_file():
            raise ApiError(404, f"no file {fname!r} in this session", "NotFound")
        return path

    @app.get("/v1/sessions/{sid}/files/{fname}")
    def download(sid: str, fname: str, request: Request):
        return FileResponse(job_file(sid, fname, request), media_type="application/octet-stream", filename=fname)

    @app.delete("/v1/sessions/{sid}/files/{fname}")
    def delete_file(sid: str, fname: str, request: Request):
        """Downloaded: not kept until the session closes (a heatmap per live click, fields of GBs)."""
        job_file(sid, fname, request).unlink(missing_ok=True)
        return reply({"deleted": fname})

    return app


def _too_big(size: int, limit_mb: float) -> str:
    return (f"the upload is {size / 2**20:.1f} MB or more, over the server's limit (--max-upload-mb {limit_mb:g}); "
            "crop or resample the volume")


def run_server(state: ServerState, host: str, port: int, certfile: Optional[str] = None,
               keyfile: Optional[str] = None, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM: uvicorn stops accepting, then returns)."""
    import uvicorn

    config = uvicorn.Config(create_app(state), host=host, port=port, ssl_certfile=certfile, ssl_keyfile=keyfile,
                            log_level=log_level, access_log=True, server_header=False, timeout_keep_alive=30)
    try:
        uvicorn.Server(config).run()
    finally:
        state.stop()


__all__ = ["create_app", "run_server", "OPERATIONS", "Path"]
