"""The application's shared resources: typed keys and the contexts that own them.

Each resource is an async generator in the app's `cleanup_ctx`: created before the
first request, closed after the last one has finished.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
from aiohttp import web

from .config import Settings
from .errors import ConfigError
from .store import migrations
from .store.pool import create_pool

SETTINGS = web.AppKey("settings", Settings)
MIGRATIONS = web.AppKey("migrations", list[migrations.Migration])
POOL = web.AppKey("pool", asyncpg.Pool)
HTTP = web.AppKey("http", aiohttp.ClientSession)


async def database_pool(app: web.Application) -> AsyncIterator[None]:
    """The asyncpg pool; the start fails unless every migration is applied."""
    settings = app[SETTINGS]
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL: not set")
    pool = await create_pool(
        settings.database_url.get_secret_value(), max_size=settings.db_pool_size
    )
    try:
        async with pool.acquire() as conn:
            await migrations.check_current(conn, app[MIGRATIONS])
        app[POOL] = pool
        yield
    finally:
        await pool.close()


async def http_session(app: web.Application) -> AsyncIterator[None]:
    """One client session for every outbound call, sharing its connection pool."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30, connect=5),
        raise_for_status=False,
    ) as session:
        app[HTTP] = session
        yield
