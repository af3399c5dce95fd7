"""What every benchmark shares: a fresh database, a Tuneyard process, percentiles.

Benchmarks measure ratios within one run on one machine: absolute figures on a
shared two-core machine mean little, ratios hold. They are run by hand or by
`make bench`, never as timed tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
# The machine's own PostgreSQL unless told otherwise; each run makes a fresh
# database through it and drops it after.
SERVER_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def floor_directory() -> Path:
    """Where the floor references live: FLOOR_DIR, else ../shared/bench beside
    the repository, else the workplace's shared folder."""
    candidates = [
        Path(os.environ["FLOOR_DIR"]) if "FLOOR_DIR" in os.environ else None,
        ROOT.parent / "shared" / "bench",
        Path("/work/shared/bench"),
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "reference_server.py").is_file():
            return candidate
    raise SystemExit("the floor references were not found; set FLOOR_DIR")


def peak_rss_mb(pid: int) -> float:
    """The most memory the process has held resident so far (Linux's VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for process {pid}")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def backend_pids(database: str) -> list[int]:
    """The PostgreSQL server processes serving connections to `database` on this
    machine (their titles read "postgres: ... USER DATABASE HOST(PORT) ...")."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if title.startswith("postgres:") and database in title.split():
            found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU used between start() and stop() by one process and by the database's
    server processes, including those that connect meanwhile (those that leave
    before stop() are missed, so keep connections open across the window)."""

    def __init__(self, pid: int, database: str) -> None:
        self.pid = pid
        self.database = database
        self._start: dict[int, float] = {}
        self._server_start = 0.0

    def start(self) -> None:
        self._server_start = cpu_seconds(self.pid)
        self._start = {p: cpu_seconds(p) for p in backend_pids(self.database)}

    def stop(self) -> dict[str, float]:
        database = sum(
            cpu_seconds(p) - self._start.get(p, 0.0)
            for p in backend_pids(self.database)
        )
        return {
            "server_cpu_s": round(cpu_seconds(self.pid) - self._server_start, 2),
            "database_cpu_s": round(database, 2),
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


class BenchDatabase:
    """A database of its own for one run, migrated, dropped afterwards."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}_{secrets.token_hex(3)}"
        parts = urlsplit(SERVER_URL)
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))

    async def __aenter__(self) -> BenchDatabase:
        conn = await asyncpg.connect(SERVER_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()
        subprocess.run(
            [sys.executable, "-m", "service", "migrate"],
            env={
                **os.environ,
                "DATABASE_URL": self.url,
                "TUNEYARD_LOG_LEVEL": "warning",
            },
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return self

    def create_token(self, caller: str) -> str:
        """A caller's API token, made the way an operator makes one."""
        created = subprocess.run(
            [sys.executable, "-m", "service", "tokens", "create", caller],
            env={
                **os.environ,
                "DATABASE_URL": self.url,
                "TUNEYARD_LOG_LEVEL": "warning",
            },
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        return created.stdout.strip().splitlines()[-1]

    async def __aexit__(self, *exc: object) -> None:
        conn = await asyncpg.connect(SERVER_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


class ServiceProcess:
    """`tuneyard serve` on a free port, quiet, workers off unless asked."""

    def __init__(
        self, database_url: str, *, tree: Path = ROOT, **settings: str
    ) -> None:
        self.tree = tree
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REPLICATE_API_TOKEN": "r8_bench",
            "REPLICATE_BASE_URL": "http://127.0.0.1:9",
            "REPLICATE_WEBHOOK_SECRET": "whsec_YmVuY2htYXJrLXNlY3JldC1rZXk=",
            "TUNEYARD_PUBLIC_URL": self.url,
            "TUNEYARD_PORT": str(self.port),
            "TUNEYARD_WORKERS": "false",
            "TUNEYARD_LOG_LEVEL": "warning",
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> ServiceProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"], env=self.env, cwd=self.tree
        )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        raise RuntimeError("tuneyard serve did not become healthy")

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
