"""The Replicate simulator as a process of its own, with its admin API's helpers.

In a process, the simulator's clocks and webhook deliveries keep time while the
scenario's own event loop is busy sending load or pumping a database proxy.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp

from service.webhooks.sign import new_webhook_secret
from tests.support.processes import TuneyardProcess, free_port
from tests.support.simulator import wait_until

TOKEN = "r8_chaos_suite"
# Generous limits: a scenario that wants throttling asks for a storm.
RATE_LIMIT = 1_000_000
CREATE_RATE_LIMIT = 1_000_000


class SimulatorProcess:
    """`tuneyard simulator` on a free loopback port.

    Flags are `tuneyard simulator` flags without their dashes, with underscores:
    `SimulatorProcess(tmp, training_seconds=1, webhook_drop_rate=1.0)`.
    """

    def __init__(self, workdir: Path, **flags: Any) -> None:
        self.secret = flags.pop("secret", None) or new_webhook_secret()
        self.token = TOKEN
        port = free_port()
        settings = {
            "port": port,
            "token": TOKEN,
            "secret": self.secret,
            "rate_limit": RATE_LIMIT,
            "create_rate_limit": CREATE_RATE_LIMIT,
            "seed": 7,
            **flags,
        }
        args = ["simulator"]
        for name, value in settings.items():
            args += ["--" + name.replace("_", "-"), str(value)]
        self.process = TuneyardProcess(
            workdir, *args, TUNEYARD_PORT=str(port), TUNEYARD_LOG_LEVEL="warning"
        )
        self.url = self.process.url
        self._admin: aiohttp.ClientSession | None = None

    async def start(self) -> SimulatorProcess:
        self.process.start()
        self._admin = aiohttp.ClientSession(base_url=self.url)
        await wait_until(
            self._answers, timeout=30, interval=0.1, message="the simulator answers"
        )
        return self

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        if self.process.exit_code is None:
            self.process.signal(signal.SIGTERM)
            try:
                await self.process.wait(timeout=15)
            except AssertionError:
                self.process.kill()

    async def _answers(self) -> bool:
        if self.process.exit_code is not None:
            raise AssertionError(f"the simulator exited:\n{self.process.output}")
        try:
            await self.health()
        except aiohttp.ClientConnectionError:
            return False
        return True

    # The admin API (/_sim/); each helper fails the scenario on a non-2xx answer.

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/_sim/health")

    async def faults(self) -> dict[str, Any]:
        return await self._call("GET", "/_sim/faults")

    async def set_faults(self, **changes: Any) -> dict[str, Any]:
        return await self._call("PATCH", "/_sim/faults", changes)

    async def trainings(self) -> list[dict[str, Any]]:
        """Every training made on the simulator, newest first."""
        return (await self._call("GET", "/_sim/trainings"))["results"]

    async def webhooks(self, training_id: str | None = None) -> list[dict[str, Any]]:
        query = {} if training_id is None else {"training_id": training_id}
        return (await self._call("GET", "/_sim/webhooks", params=query))["results"]

    async def stats(self) -> dict[str, Any]:
        return await self._call("GET", "/_sim/stats")

    async def finish_training(self, training_id: str, status: str) -> dict[str, Any]:
        path = f"/_sim/trainings/{training_id}/finish"
        return await self._call("POST", path, {"status": status})

    async def api_get(self, path: str) -> Any:
        """A GET on Replicate's API itself, as Tuneyard would make it."""
        assert self._admin is not None
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self._admin.get(path, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        if self._admin is None:
            raise RuntimeError("start the simulator first")
        async with self._admin.request(
            method, path, json=body, params=params
        ) as response:
            answer = await response.json(content_type=None)
            if response.status >= 300:
                raise AssertionError(f"{method} {path}: {response.status} {answer}")
            return answer
