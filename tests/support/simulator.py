"""The Replicate simulator in-process on a free loopback port, for tests.

`Simulator` starts the simulator's app in the test's own event loop and stops it;
its admin helpers set faults and read what happened. `WebhookReceiver` is a
receiver of webhooks that records every delivery and answers as told.
`wait_until` polls a condition with a generous deadline, for clocks and
deliveries that finish in their own time.

A fixture for a test module or conftest::

    from collections.abc import AsyncIterator

    import pytest

    from tests.support.simulator import Simulator

    @pytest.fixture
    async def simulator() -> AsyncIterator[Simulator]:
        async with Simulator(training_seconds=0.2, seed=7) as sim:
            yield sim

    async def test_lost_answer_is_recovered(simulator: Simulator) -> None:
        # Point the code under test at simulator.url with simulator.token, and
        # verify its webhooks with simulator.secret.
        await simulator.set_faults(lost_create_rate=1)
        ...
        [training] = await simulator.trainings(destination="local/faces")
        assert training["answer_lost"]

Keyword arguments to `Simulator` are `SimulatorConfig` fields, or fault names
(`FaultSettings` fields) for the faults in force from the start.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields, replace
from types import TracebackType
from typing import Any, TypeVar, cast

import aiohttp
from aiohttp import web

from service.simulator import SimulatorConfig, create_simulator_app
from service.simulator.faults import FaultSettings

T = TypeVar("T")

# Any non-empty token is accepted unless the config names one; this is the one
# the helper sends then.
DEFAULT_TOKEN = "r8_simulator_test_token"
_CONFIG_FIELDS = {f.name for f in fields(SimulatorConfig)}


async def wait_until(
    check: Callable[[], Awaitable[T | None] | T | None],
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll `check` until it returns something truthy, and return that.

    The deadline is generous because the machines running tests are shared;
    tests must never depend on how quickly a condition came true.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return cast(T, result)
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout}s")
        await asyncio.sleep(interval)


class Simulator:
    """The simulator's app on 127.0.0.1 and a free port, with admin helpers."""

    def __init__(self, config: SimulatorConfig | None = None, **settings: Any) -> None:
        fault_names = set(FaultSettings.model_fields)
        unknown = settings.keys() - _CONFIG_FIELDS - fault_names
        if unknown:
            raise TypeError(f"unknown simulator settings: {sorted(unknown)}")
        config = config or SimulatorConfig()
        faults = {k: v for k, v in settings.items() if k in fault_names}
        changes = {k: v for k, v in settings.items() if k in _CONFIG_FIELDS}
        if faults:
            merged = {**config.faults.model_dump(), **faults}
            changes["faults"] = FaultSettings.model_validate(merged)
        self.config = replace(config, **changes)
        self.app = create_simulator_app(self.config)
        self._runner: web.AppRunner | None = None
        self._admin: aiohttp.ClientSession | None = None
        self.url = ""

    @property
    def token(self) -> str:
        """A token the simulator accepts."""
        return self.config.token or DEFAULT_TOKEN

    @property
    def secret(self) -> str:
        """The whsec_ secret that signs its webhooks."""
        return self.config.secret

    @property
    def account(self) -> str:
        return self.config.account

    @property
    def headers(self) -> dict[str, str]:
        """Headers that authenticate an API request."""
        return {"Authorization": f"Bearer {self.token}"}

    async def start(self) -> Simulator:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._admin = aiohttp.ClientSession(base_url=self.url)
        return self

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def api_session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """A client session for Replicate's API on the simulator; close it after."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return aiohttp.ClientSession(base_url=self.url, headers=headers, **kwargs)

    # The admin API (/_sim/); each helper fails the test on a non-2xx answer.

    async def faults(self) -> dict[str, Any]:
        return await self._admin_call("GET", "/_sim/faults")

    async def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change some faults; the others stay. Returns the faults now in force."""
        return await self._admin_call("PATCH", "/_sim/faults", changes)

    async def trainings(self, destination: str | None = None) -> list[dict[str, Any]]:
        """Every training made (newest first), with its destination and webhook."""
        query = {} if destination is None else {"destination": destination}
        answer = await self._admin_call("GET", "/_sim/trainings", params=query)
        return answer["results"]

    async def training(self, training_id: str) -> dict[str, Any]:
        """One training as the admin API shows it."""
        found = [t for t in await self.trainings() if t["id"] == training_id]
        if not found:
            raise AssertionError(f"the simulator has no training {training_id}")
        return found[0]

    async def webhooks(self, training_id: str | None = None) -> list[dict[str, Any]]:
        """Every webhook delivery attempt, oldest first."""
        query = {} if training_id is None else {"training_id": training_id}
        answer = await self._admin_call("GET", "/_sim/webhooks", params=query)
        return answer["results"]

    async def stats(self) -> dict[str, Any]:
        return await self._admin_call("GET", "/_sim/stats")

    async def reset(self) -> None:
        """Forget models, versions, trainings, deliveries and stats."""
        await self._admin_call("POST", "/_sim/reset")

    async def create_web_training(
        self,
        model: str,
        destination: str,
        input: dict[str, Any],
        version: str | None = None,
    ) -> dict[str, Any]:
        """A training "made on the web": source web, no webhook."""
        body: dict[str, Any] = {"model": model, "destination": destination}
        body["input"] = input
        if version is not None:
            body["version"] = version
        return await self._admin_call("POST", "/_sim/trainings", body)

    async def push_version(
        self, owner: str, name: str, **fields: Any
    ) -> dict[str, Any]:
        """A version "pushed from the web" to a model (cog_version, openapi_schema)."""
        path = f"/_sim/models/{owner}/{name}/versions"
        return await self._admin_call("POST", path, fields)

    async def finish_training(self, training_id: str, status: str) -> dict[str, Any]:
        """End a training now: succeeded, failed or canceled."""
        path = f"/_sim/trainings/{training_id}/finish"
        return await self._admin_call("POST", path, {"status": status})

    async def _admin_call(
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


@dataclass(frozen=True)
class ReceivedWebhook:
    """One request the receiver got: the raw body and headers, as sent."""

    path: str
    body: bytes
    headers: dict[str, str]
    answered: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class WebhookReceiver:
    """An HTTP receiver on a free loopback port that records each request.

    It answers 200 unless told otherwise: `answer_with(503, 503)` answers the
    next two requests 503, then 200 again; `redirect_to(url)` answers 307 to
    `url` from then on; `hold_next(2.0)` makes the next request wait 2 s for
    its answer. Requests to `{base_url}/elsewhere` are recorded and answered 200.
    """

    def __init__(self) -> None:
        self.received: list[ReceivedWebhook] = []
        self._statuses: list[int] = []
        self._headers: list[dict[str, str]] = []
        self._holds: list[float] = []
        self._redirect: str | None = None
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.url = ""

    def answer_with(
        self, *statuses: int, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next requests with these statuses (and headers), in turn."""
        self._statuses.extend(statuses)
        self._headers.extend([headers or {}] * len(statuses))

    def redirect_to(self, url: str) -> None:
        self._redirect = url

    def hold_next(self, seconds: float, count: int = 1) -> None:
        self._holds.extend([seconds] * count)

    async def start(self, path: str = "/webhooks/replicate") -> WebhookReceiver:
        app = web.Application()
        app.router.add_post(path, self._receive)
        app.router.add_post("/elsewhere", self._receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self.url = self.base_url + path
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def bodies(self) -> Iterable[bytes]:
        return (hook.body for hook in self.received)

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self._holds:
            await asyncio.sleep(self._holds.pop(0))
        extra: dict[str, str] = {}
        if request.path == "/elsewhere":
            status = 200
        elif self._redirect is not None:
            status = 307
        else:
            status = self._statuses.pop(0) if self._statuses else 200
            extra = self._headers.pop(0) if self._headers else {}
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.received.append(ReceivedWebhook(request.path, body, headers, status))
        if status == 307:
            return web.Response(status=307, headers={"Location": str(self._redirect)})
        return web.Response(status=status, headers=extra)
