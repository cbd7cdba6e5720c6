"""What every route of the server needs from a request, as FastAPI dependencies.

A route declares what it works on (``caller``, ``session``, ``job``, a JSON ``body``) and these
functions check it first, in that order: the protocol version, then the token, then the
session's owner, and only then is a body read, so an unknown caller never gets a byte parsed.
A route therefore holds no checks of its own, and a new route gets all of them by naming the
same dependencies.
"""

# no `from __future__ import annotations`: FastAPI reads the dependencies' types at run time
import json
import math
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .protocol import PROTOCOL_VERSION, dumps
from .server_access import ApiError, check_json_body, json_too_large
from .server_state import ServerState
from .server_types import ClientSession, Job


def reply(obj, status: int = 200) -> Response:
    """A JSON reply in the protocol's strict JSON (no NaN)."""
    return Response(dumps(obj), status_code=status, media_type="application/json")


def server_state(request: Request) -> ServerState:
    """The one :class:`ServerState` of this app (``create_app`` puts it on ``app.state``)."""
    return request.app.state.meddift


State = Annotated[ServerState, Depends(server_state)]


def caller(request: Request, state: State) -> str:
    """The protocol check, then the token: the caller's identity (never the token itself)."""
    theirs = request.headers.get("x-meddift-protocol")
    if theirs != str(PROTOCOL_VERSION):
        raise ApiError(
            400 if theirs is None else 409,
            f"this client speaks MedDIFT protocol {theirs or '(none: header X-MedDIFT-Protocol missing)'}"
            f" but the server (MedDIFT {__version__}) speaks protocol {PROTOCOL_VERSION}: "
            "use a client from the same release",
            "ProtocolMismatch",
        )
    if state.tokens is None:
        return "anonymous"
    auth = request.headers.get("authorization", "")
    presented = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    who = state.tokens.identify(presented)
    if who is None:
        raise ApiError(
            401,
            "missing or wrong token: send the server's token as 'Authorization: Bearer ...' "
            "(meddift: --token-file F or MEDDIFT_TOKEN)",
            "Unauthorized",
        )
    return who


Caller = Annotated[str, Depends(caller)]


def session(sid: str, who: Caller, state: State) -> ClientSession:
    """The caller's own session ``sid`` (anyone else's answers as one that does not exist)."""
    return state.session(sid, who)


Session = Annotated[ClientSession, Depends(session)]


def job(jid: str, sess: Session) -> Job:
    """Job ``jid`` of the caller's session."""
    found = sess.jobs.get(jid)
    if found is None:
        raise ApiError(404, f"no job {jid} in this session", "NotFound")
    return found


FoundJob = Annotated[Job, Depends(job)]


async def json_body(request: Request, who: Caller, state: State) -> dict:
    """The request's JSON object, its size and nesting checked before it is parsed (``who``: the caller
    is checked first, so a stranger's body is never read)."""
    limit = int(state.limits.max_json_mb * 2**20)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise json_too_large(state.limits)  # without reading a byte
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise json_too_large(state.limits)
        chunks.append(chunk)
    raw = b"".join(chunks)
    await run_in_threadpool(check_json_body, raw, state.limits)
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ApiError(400, f"malformed JSON in the request body: {err}", "BadRequest") from err
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "BadRequest")
    return body


Body = Annotated[dict, Depends(json_body)]


def wait_seconds(wait: str = "0") -> float:
    """``?wait=S``: how long a request may wait for its job (a long poll); not a number is a 400."""
    try:
        w = float(wait)
    except ValueError as err:
        raise ApiError(400, "'wait' must be a number of seconds", "BadRequest") from err
    return 0.0 if not math.isfinite(w) else w


Wait = Annotated[float, Depends(wait_seconds)]

__all__ = [
    "reply",
    "server_state",
    "caller",
    "session",
    "job",
    "json_body",
    "wait_seconds",
    "State",
    "Caller",
    "Session",
    "FoundJob",
    "Body",
    "Wait",
]
