"""Who is calling: the name every training and alias move is recorded under."""

from __future__ import annotations

from aiohttp import web

# Until callers authenticate with tokens, every request is recorded under one
# name; the token's name takes its place once authentication is in.
ANONYMOUS = "anonymous"


def caller_of(request: web.Request) -> str:
    return ANONYMOUS
