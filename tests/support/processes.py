"""Running `tuneyard` commands as real processes on real ports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

# Variables a developer's shell may hold that would change what a process under
# test does; each test sets what it needs explicitly.
_OWN_VARIABLES = ("DATABASE_URL", "REPLICATE_", "TUNEYARD_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_VARIABLES)}
    env.update(TUNEYARD_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


class TuneyardProcess:
    """One `python -m service COMMAND` process, its output kept in a file."""

    def __init__(self, workdir: Path, *args: str, **settings: str) -> None:
        self.workdir = workdir
        self.args = args
        self.port = int(settings.setdefault("TUNEYARD_PORT", str(free_port())))
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = clean_environment(**settings)
        self.log_path = workdir / f"tuneyard-{self.port}-{args[0]}.log"
        self.process: subprocess.Popen[bytes] | None = None
        # What an API request to this process sends to authenticate.
        self.headers: dict[str, str] = {}

    def start(self) -> TuneyardProcess:
        with self.log_path.open("wb") as log:
            # cwd is the test's own folder, so no .env file of the developer's applies.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", *self.args],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.exit_code is not None:
                    raise AssertionError(
                        f"exited with {self.exit_code}:\n{self.output}"
                    )
                try:
                    async with session.get(
                        f"{self.url}/healthz", headers=self.ops_headers
                    ) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"not healthy after {timeout}s:\n{self.output}")

    @property
    def ops_headers(self) -> dict[str, str]:
        """What /healthz, /readyz and /metrics need when an ops token is set."""
        token = self.env.get("TUNEYARD_OPS_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout}s:\n{self.output}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        found = []
        for line in self.output.splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found


def run_command(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run one `tuneyard` command to completion (e.g. `tokens create NAME`)."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=clean_environment(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create_token(database_url: str, name: str, *owners: str) -> str:
    """A caller's token, made as an operator makes one: with the CLI."""
    owner_args = [arg for owner in owners for arg in ("--owner", owner)]
    result = run_command(
        "tokens", "create", name, *owner_args, DATABASE_URL=database_url
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]
