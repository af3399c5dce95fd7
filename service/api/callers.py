"""Who is calling: authentication by bearer token, and what the token may touch.

Every request under /v1/ needs `Authorization: Bearer <token>` (a token made with
`tuneyard tokens create`), unless TUNEYARD_AUTH_REQUIRED is off. Replicate's
webhooks are authenticated by their signature instead. /healthz, /readyz and
/metrics are open, or need TUNEYARD_OPS_TOKEN when it is set; the API document
and its page are open.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import ClassVar

import asyncpg
from aiohttp import web

from ..errors import ProblemError
from ..resources import POOL, SETTINGS
from ..store import tokens

# Requests made while authentication is off are recorded under this name.
ANONYMOUS = "anonymous"
# A looked-up token is trusted this long before it is looked up again, which
# keeps a database read off every request; a revocation takes effect within it.
TOKEN_CACHE_SECONDS = 5.0

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
OPEN_PREFIXES = ("/openapi.json", "/docs")
SIGNED_PREFIXES = ("/webhooks/",)


class Unauthenticated(ProblemError):
    """No token, or a token that is unknown or revoked."""

    status = 401
    title = "Unauthenticated"
    type = "/problems/unauthenticated"
    # RFC 9110 section 11.6.1: a 401 names the scheme that would succeed.
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="tuneyard"'}


class Forbidden(ProblemError):
    """The token is valid but not for this destination owner."""

    status = 403
    title = "Forbidden"
    type = "/problems/forbidden"


@dataclass(frozen=True)
class Caller:
    name: str
    # Destination owners this caller may use; empty means any.
    owners: tuple[str, ...] = ()

    def may_use(self, owner: str) -> bool:
        return not self.owners or owner in self.owners

    def require(self, owner: str) -> None:
        if not self.may_use(owner):
            raise Forbidden(f"token {self.name} may not use destinations of {owner}")


CALLER = web.RequestKey("caller", Caller)


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]


class TokenCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Caller | None]] = {}

    async def caller(self, pool: asyncpg.Pool, token: str) -> Caller | None:
        key = tokens.hash_token(token)
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with pool.acquire() as conn:
            record = await tokens.find(conn, token)
        caller = None if record is None else Caller(record.name, record.owners)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (now + TOKEN_CACHE_SECONDS, caller)
        return caller


TOKEN_CACHE = web.AppKey("token_cache", TokenCache)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    # Tokens are printable ASCII; other bytes arrive as lone surrogates, which
    # cannot be encoded to be compared or hashed.
    if scheme.lower() != "bearer" or not token or not token.isascii():
        return None
    if not token.isprintable():
        return None
    return token


def is_open(path: str) -> bool:
    """Whether a path is served without a token: the API document, and
    Replicate's webhooks, which are checked by their signature instead."""
    return path.startswith(OPEN_PREFIXES) or path.startswith(SIGNED_PREFIXES)


async def authenticate(request: web.Request) -> None:
    """Check a request's token (for a path that is not open) and record its
    caller; raises Unauthenticated otherwise."""
    settings = request.app[SETTINGS]
    if request.path in OPS_PATHS:
        if settings.ops_token is not None:
            given = _bearer(request) or ""
            expected = settings.ops_token.get_secret_value()
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise Unauthenticated("this endpoint needs the operations token")
        return
    if not settings.auth_required:
        request[CALLER] = Caller(ANONYMOUS)
        return

    token = _bearer(request)
    if token is None:
        raise Unauthenticated("send Authorization: Bearer <token>")
    caller = await request.app[TOKEN_CACHE].caller(request.app[POOL], token)
    if caller is None:
        raise Unauthenticated("the token is unknown or revoked")
    request[CALLER] = caller
