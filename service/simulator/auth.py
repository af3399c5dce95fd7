"""Who is calling: Replicate's API tokens, sent as Bearer or (older) Token."""

from __future__ import annotations

import hmac

from aiohttp import web

from .config import SimulatorConfig
from .errors import Unauthenticated

_SCHEMES = ("bearer", "token")


def token_of(request: web.Request) -> str | None:
    """The token in the Authorization header, if it holds one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() not in _SCHEMES or not token:
        return None
    return token


def authenticate(request: web.Request, config: SimulatorConfig) -> str:
    """The account the request acts for; raises Unauthenticated otherwise.

    Every accepted token belongs to the one configured account. With a token
    configured only that one is accepted, else any non-empty one is.
    """
    token = token_of(request)
    if token is None:
        raise Unauthenticated()
    if config.token is not None and not hmac.compare_digest(
        token.encode(), config.token.encode()
    ):
        raise Unauthenticated()
    return config.account
