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

The app is routers (:mod:`.server_routes`) whose routes name what they need as dependencies
(:mod:`.server_requests`: the caller, the session, the job, a JSON body checked for size and depth
before it is parsed), over one :class:`~.server_state.ServerState`. The options of a new session
are checked key by key (:mod:`.server_options`), the session's files are kept and deleted by
:mod:`.server_files`, and every log handler redacts secrets (:mod:`.server_logs`).
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' types at run time
import logging
import signal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .server_logs import uvicorn_log_config
from .server_ops import OPERATIONS
from .server_routes import ROUTERS
from .server_state import ApiError, ServerState

log = logging.getLogger("meddift.server")


def create_app(state: ServerState) -> FastAPI:
    """The server's FastAPI app: its routers (:mod:`.server_routes`) over ``state``, and the error replies.

    Args:
        state: the sessions, volumes and job queue the routes work on (``app.state.meddift``).
    """
    app = FastAPI(title="MedDIFT server", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.meddift = state
    for router in ROUTERS:
        app.include_router(router)
    # Starlette types a handler as taking any Exception; each of these is registered for its own class
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)
    return app


async def _api_error(request: Request, err: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse({"error": str(err), "kind": err.kind}, err.status, headers=headers)


async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    what = "unknown route" if err.status_code == 404 else str(err.detail)
    return JSONResponse(
        {"error": f"{what}: {request.method} {request.url.path} (see GET /v1/info)", "kind": "BadRequest"},
        err.status_code,
    )


async def _internal_error(request: Request, err: Exception) -> JSONResponse:
    """A bug: its traceback to the server's log (which redacts secrets), plain words to the client."""
    log.exception("internal error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": "internal server error; the details are in the server log", "kind": "InternalError"}, 500
    )


def run_server(
    state: ServerState,
    host: str,
    port: int,
    certfile: str | None = None,
    keyfile: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM: uvicorn stops accepting, then returns); then every
    session still open is closed and its files deleted.

    Args:
        state: the server's state (its work folder, limits and tokens).
        host, port: where to listen.
        certfile, keyfile: TLS certificate and key (PEM), or None for plain HTTP.
        log_level: uvicorn's log level; every log record is redacted (:mod:`.server_logs`).
    """
    config = uvicorn.Config(
        create_app(state),
        host=host,
        port=port,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        log_level=log_level,
        access_log=True,
        server_header=False,
        timeout_keep_alive=30,
        log_config=uvicorn_log_config(),
    )
    previous = signal.signal(signal.SIGTERM, _stopped)  # uvicorn re-raises it once it has shut down
    try:
        uvicorn.Server(config).run()
    except _Stopped:
        log.info("stopped by SIGTERM")
    finally:
        signal.signal(signal.SIGTERM, previous)
        state.stop()


class _Stopped(Exception):
    """SIGTERM, raised after uvicorn's graceful shutdown so that the sessions' files are deleted
    (the default action would end the process before any ``finally``)."""


def _stopped(signum, frame) -> None:
    raise _Stopped()


__all__ = ["create_app", "run_server", "OPERATIONS"]
