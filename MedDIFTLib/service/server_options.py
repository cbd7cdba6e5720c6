"""The options of ``POST /v1/sessions``, checked in the request: every key known, every value accepted.

A session's options are used by every later job; one the engine does not know, accepted here,
would fail each of those jobs with an internal message. So the body's keys, the engine's,
matching's and registration's are each checked against the options types themselves (their
dataclass fields: a new option is accepted by adding it there, nowhere else), and each group is
built once here so that a value out of range is refused with the engine's own words.
"""

from __future__ import annotations

from dataclasses import fields

from ..errors import InputError
from ..matching.search import MatchOptions
from ..options import SERVER_OWNED_ENGINE_KEYS  # the server's own engine options (folders, device)
from ..session import EngineOptions
from .server_access import ApiError
from .server_ops import registration_options

SESSION_FIELDS = ("engine", "matching", "registration")


def session_options(body: dict) -> tuple[dict, dict, dict | None]:
    """The session request's ``engine``, ``matching`` and ``registration`` options, refused (400, naming
    the key) when any key is unknown or any value out of range.

    Args:
        body: the JSON object of ``POST /v1/sessions``.

    Returns:
        ``(engine, matching, registration)``: dicts as sent (``registration`` None when absent).
    """
    unknown = sorted(set(body) - set(SESSION_FIELDS))
    if unknown:
        raise ApiError(
            400, f"unknown field(s) {unknown} in the session request; expected {list(SESSION_FIELDS)}", "BadRequest"
        )
    engine, matching = _group(body, "engine"), _group(body, "matching")
    own = sorted(k for k in engine if k in SERVER_OWNED_ENGINE_KEYS)
    if own:
        raise ApiError(
            400,
            f"engine options {own} are the server's to choose (its folders and device); remove them from the request",
            "BadRequest",
        )
    _build("engine", EngineOptions, engine)
    _build("matching", MatchOptions, matching)
    registration = body.get("registration")
    if registration is not None:
        registration_options(registration)  # refused here, before a session exists
    return engine, matching, registration


def _group(body: dict, key: str) -> dict:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"{key!r} must be a JSON object of {key} options", "BadRequest")
    return value


def _build(key: str, cls: type, values: dict) -> None:
    """``cls(**values)``, each refusal a 400 that names ``key`` and the unknown or bad option."""
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ApiError(400, f"unknown {key} option(s) {unknown}; known: {known}", "BadRequest")
    try:
        cls(**values)
    except (InputError, TypeError, ValueError) as err:
        raise ApiError(400, f"{key!r}: {err}", "BadRequest") from err


__all__ = ["session_options", "SESSION_FIELDS", "SERVER_OWNED_ENGINE_KEYS"]
