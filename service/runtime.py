"""Running Tuneyard as a process: which database, serving until a signal."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import asyncpg
from aiohttp import web
from pydantic import SecretStr

from .config import Settings
from .logs import get_logger
from .store import migrations
from .store.embedded import EmbeddedPostgres
from .store.pool import CONNECT_TIMEOUT

log = get_logger()


@contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """Yield settings whose DATABASE_URL points at a running database.

    With DATABASE_URL set, that is the configured server. Without it, an embedded
    PostgreSQL is started with its data in TUNEYARD_DATA_DIR and released on exit.
    """
    if settings.database_url is not None:
        yield settings
        return

    embedded = EmbeddedPostgres(settings.data_dir)
    embedded.start()
    try:
        url = asyncio.run(embedded.create_database())
        yield settings.model_copy(update={"database_url": SecretStr(url)})
    finally:
        embedded.stop()


async def apply_migrations(settings: Settings) -> list[migrations.Migration]:
    """Apply pending migrations to the configured database."""
    assert settings.database_url is not None
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(), timeout=CONNECT_TIMEOUT
    )
    try:
        return await migrations.migrate(conn, migrations.load())
    finally:
        await conn.close()


async def serve(
    app: web.Application,
    settings: Settings,
    *,
    on_started: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Serve `app` until SIGINT or SIGTERM, then shut down gracefully.

    Graceful means: stop accepting connections, let requests in flight finish (up
    to TUNEYARD_SHUTDOWN_TIMEOUT), then close the app's resources. A second signal
    stops waiting for them.
    """
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout,
    )
    await runner.setup()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None

    def on_signal(signum: signal.Signals) -> None:
        if stopping.is_set():
            log.warning("shutdown_forced", signal=signum.name)
            main_task.cancel()
            return
        log.info("shutdown_started", signal=signum.name)
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        url = f"http://{settings.host}:{settings.port}"
        log.info("server_started", url=url)
        if on_started is not None:
            result = on_started(url)
            if result is not None:
                await result
        await stopping.wait()
    finally:
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("server_stopped")
