"""What the server's logs may say: never a token, however a client sent it.

The server accepts a token only in ``Authorization: Bearer``, but a client can put one anywhere:
in the query string (which uvicorn's access log writes in full), in a cookie, in a header a
proxy echoes into a message. Every record of every logger the server writes to (uvicorn's access
and error logs, ``meddift.server``, the root logger of ``meddift serve``) passes
:class:`RedactSecrets` at its handler, so a secret is replaced before it is formatted; a new
logger inherits the rule by using one of these handlers, not by remembering to be careful.

Query strings are kept only for the parameters the API defines that can never hold a secret or a
patient's name (:data:`SAFE_QUERY`); every other value, ``label`` included, is written as
``[redacted]``.
"""

from __future__ import annotations

import copy
import logging
import re

from uvicorn.config import LOGGING_CONFIG

SAFE_QUERY = frozenset({"wait", "format", "hu_offset"})
"""Query parameters written as sent: numbers and format names of the API, nothing a client chooses freely."""
REDACTED = "[redacted]"
_PLAIN = logging.Formatter()

_QUERY = re.compile(r"([?&;])([^=&;#\s\"']*)=([^&;#\s\"']*)")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)(\s+)[^\s\"',;]+")
_NAMED = re.compile(r"(?i)\b(authorization\s*[=:]|[a-z_-]*token\s*=)(\s*)[^\s\"',;&]+")
_COOKIE = re.compile(r"(?i)\b((?:set-)?cookie)(\s*[=:]\s*)[^\r\n\"']+")


def redact(text: str) -> str:
    """``text`` with every query value outside :data:`SAFE_QUERY`, every ``Bearer ...`` credential and every
    ``token=``/``cookie:``-like value replaced by :data:`REDACTED`.

    Args:
        text: a log message or one of its arguments (a request line, a header, an error).
    """
    text = _QUERY.sub(
        lambda m: m.group(0) if m.group(2) in SAFE_QUERY else f"{m.group(1)}{m.group(2)}={REDACTED}", text
    )
    for pattern in (_COOKIE, _BEARER, _NAMED):  # a cookie header whole; then "Bearer X" before "Authorization: X"
        text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return text


class RedactSecrets(logging.Filter):
    """A handler filter: the record's message and its string arguments redacted (:func:`redact`).

    The arguments keep their places, because uvicorn's access formatter unpacks them by position
    (client, method, path with query, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:  # a traceback's messages may quote a request
            record.exc_text = redact(_PLAIN.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def uvicorn_log_config() -> dict:
    """uvicorn's own logging configuration with :class:`RedactSecrets` on each of its handlers."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactSecrets}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config


def redact_root_handlers() -> None:
    """Put :class:`RedactSecrets` on every handler of the root logger (``meddift.server`` logs through it)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


__all__ = ["redact", "RedactSecrets", "uvicorn_log_config", "redact_root_handlers", "SAFE_QUERY", "REDACTED"]
