"""The asyncpg connection pool."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import asyncpg

from ..errors import Unavailable
from ..logs import get_logger

log = get_logger()

# What asyncpg raises when the server is down, restarting or unreachable, as opposed
# to an error in a query: the request may be retried once the database is back.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    # A server that ends a session (a restart, pg_terminate_backend) sends a
    # FATAL message, then closes the socket. A pooled connection used between
    # the two raises this rather than a connection error (asyncpg issue #784);
    # the pool then drops it.
    asyncpg.InternalClientError,
)

# How long one connection attempt may take; the default of 60 s would leave a
# request hanging long after its caller gave up.
CONNECT_TIMEOUT = 5.0
# The default bound of one query (TUNEYARD_DB_TIMEOUT).
QUERY_TIMEOUT = 5.0
# How long handing a connection back may take. It is immediate unless a query was
# cancelled (it timed out, or its request went away): asyncpg then waits for the
# server to confirm the cancel, for up to the query timeout again, and a silent
# network never confirms it. Past this bound the connection is dropped instead.
RELEASE_TIMEOUT = 1.0
# How long the start waits for the database: long enough for a PostgreSQL that starts
# beside Tuneyard (docker compose, a restarting pod), short enough to fail visibly.
STARTUP_WAIT = 30.0


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs when it goes back to the pool: nothing more.

    asyncpg's default reset sends a query on every release (unlisten, unlock,
    reset settings): a round trip per use. Tuneyard's pooled connections change
    no session state (listeners and the migration lock use connections of their
    own), and asyncpg still ends any open transaction before calling this.
    """


class BoundedPool(asyncpg.Pool):
    """asyncpg's pool, handing connections back within RELEASE_TIMEOUT and
    handing them out within `acquire_timeout`.

    So a request whose query timed out answers after the query timeout, not
    after twice it; and while a silent database holds every connection, the
    requests waiting for one get their 503 after the same bound, instead of
    after the timeouts of all the requests ahead of them.
    """

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(
        self,
        *,
        timeout: float | None = None,
    ) -> Any:
        return super().acquire(
            timeout=self.acquire_timeout if timeout is None else timeout
        )

    async def release(
        self,
        connection: asyncpg.Connection,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (asyncpg's signature)
    ) -> None:
        await super().release(
            connection, timeout=RELEASE_TIMEOUT if timeout is None else timeout
        )


async def create_pool(
    dsn: str, *, max_size: int = 10, query_timeout: float = QUERY_TIMEOUT
) -> asyncpg.Pool:
    """Open a pool, waiting up to STARTUP_WAIT seconds for the database.

    Every query, and every wait for a connection, is bounded by
    `query_timeout`; handing a connection back by RELEASE_TIMEOUT.
    """
    deadline = asyncio.get_running_loop().time() + STARTUP_WAIT
    delay = 0.2
    while True:
        try:
            # asyncpg.create_pool with its defaults, but our pool class.
            return await BoundedPool(
                dsn,
                min_size=1,
                max_size=max_size,
                max_queries=50_000,
                max_inactive_connection_lifetime=300.0,
                loop=None,
                connection_class=asyncpg.Connection,
                record_class=asyncpg.Record,
                init=_init_connection,
                reset=_keep_session,
                timeout=CONNECT_TIMEOUT,
                command_timeout=query_timeout,
                acquire_timeout=query_timeout,
            )
        except (OSError, *DATABASE_UNAVAILABLE) as exc:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise Unavailable(f"database unreachable: {_reason(exc)}") from None
            log.warning("database_unreachable", error=_reason(exc), retry_in=delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)


def _reason(exc: BaseException) -> str:
    # asyncpg's messages name the host and database, never the password.
    return str(exc) or type(exc).__name__
