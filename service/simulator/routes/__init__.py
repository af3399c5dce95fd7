"""Handlers: Replicate's endpoints, and the simulator's own admin API."""

from __future__ import annotations

from aiohttp import web


def api_base(request: web.Request) -> str:
    """Scheme and host the caller reached the simulator at, for absolute URLs."""
    return str(request.url.origin())
