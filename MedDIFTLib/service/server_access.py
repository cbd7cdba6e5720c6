"""Who may call the server and how much: the refusal type, the limits and the token check.

Apart from :mod:`.server_state` (sessions, volumes, jobs) because these rules stand on their own
and are read on every request: a caller is identified before anything of a session is touched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError


class ApiError(Exception):
    """A refusal meant for the client: HTTP status, plain words, and an error kind."""

    def __init__(self, status: int, message: str, kind: str = "InputError"):
        super().__init__(message)
        self.status, self.kind = status, kind


@dataclass
class Limits:
    """Every limit names its command-line option in its error, so an admin knows what to raise."""

    max_upload_mb: float = 1024.0
    max_voxels: int = 600_000_000
    max_sessions: int = 16
    max_queued_jobs: int = 32
    idle_timeout_s: float = 1800.0
    max_json_mb: float = 8.0
    retention_s: float = 3600.0


MAX_JSON_DEPTH = 32
"""The deepest JSON a request may nest: the API's own bodies nest 4 levels (a 4x4 matrix in an object)."""
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_too_large(limits: Limits) -> ApiError:
    """The refusal of a JSON body over ``--max-json-mb`` (413), given as soon as the size is known."""
    return ApiError(
        413,
        f"the request body is over {limits.max_json_mb:g} MB, the server's limit for JSON "
        "(--max-json-mb); send fewer points per request",
        "LimitExceeded",
    )


def check_json_body(raw: bytes, limits: Limits) -> None:
    """Refuse a JSON body before it is parsed: larger than ``--max-json-mb`` (413), or nested deeper than
    :data:`MAX_JSON_DEPTH` (400), since a parser given 100,000 open brackets fails deep in its recursion.

    Args:
        raw: the request body as received (already cut at the size limit by the reader).
        limits: the server's limits (``max_json_mb``).
    """
    if len(raw) > limits.max_json_mb * 2**20:
        raise json_too_large(limits)
    depth = 0
    for m in _JSON_TOKEN.finditer(raw):  # strings are skipped whole, so a bracket inside one does not count
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ApiError(
                    400,
                    f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep; MedDIFT requests nest 4 at most",
                    "BadRequest",
                )
        elif c in (b"]", b"}"):
            depth -= 1


class Tokens:
    """The accepted tokens (one per line in the token file), as digests."""

    MIN_LENGTH = 16

    def __init__(self, tokens: list[str]):
        if not tokens:
            raise InputError("the token file holds no token (one per line; lines starting with # are comments)")
        short = [i + 1 for i, t in enumerate(tokens) if len(t) < self.MIN_LENGTH]
        if short:
            raise InputError(
                f"token(s) number {short} are shorter than {self.MIN_LENGTH} characters: too easy to "
                'guess; make one with `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
            )
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    @classmethod
    def from_file(cls, path) -> Tokens:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise InputError(f"cannot read the token file {path}: {err.strerror or err}") from err
        return cls([ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")])

    def identify(self, presented: str | None) -> str | None:
        """The caller's identity (``token-N``) or None. Digests have one length whatever was sent,
        and every token is compared (no early exit), so the time taken says nothing about a match."""
        digest = hashlib.sha256((presented or "").encode()).digest()
        found = None
        for i, ref in enumerate(self._digests):
            if hmac.compare_digest(digest, ref):
                found = f"token-{i + 1}"
        return found

    def __len__(self) -> int:
        return len(self._digests)


__all__ = ["ApiError", "Limits", "Tokens", "check_json_body", "json_too_large", "MAX_JSON_DEPTH"]
