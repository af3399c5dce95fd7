"""Tuneyard's app in-process on a real loopback port, against the test database."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.api.server import AppRunner
from service.app import create_app
from service.config import load_settings

from ..support.processes import free_port
from ..support.simulator import Simulator

WEBHOOK_SECRET = (
    "whsec_" + base64.b64encode(b"integration-tests-secret-key!!!").decode()
)

AppFactory = Callable[..., Awaitable[TestClient]]


class ServedAsInProduction(TestServer):
    """aiohttp's test server, but serving the way `tuneyard serve` does:
    through Tuneyard's runner, and without cancelling a handler when its client
    goes away (aiohttp's test server turns that on; its servers do not)."""

    async def _make_runner(self, **kwargs: object) -> web.BaseRunner:
        kwargs["handler_cancellation"] = False
        return AppRunner(self.app, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def app_client() -> AsyncIterator[AppFactory]:
    """Start the app with these settings; workers are off unless a test asks.

    Replicate's URL points nowhere unless a test gives one, so a test that
    reaches Replicate by accident fails instead of hanging.
    """
    clients: list[TestClient] = []

    async def start(
        database_url: str,
        *,
        prepare: Callable[[web.Application], None] | None = None,
        port: int | None = None,
        **settings: str,
    ) -> TestClient:
        values = {
            "DATABASE_URL": database_url,
            "REPLICATE_API_TOKEN": "r8_integration_tests",
            "REPLICATE_BASE_URL": "http://127.0.0.1:9",
            "REPLICATE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TUNEYARD_PUBLIC_URL": "http://127.0.0.1:9",
            "TUNEYARD_WORKERS": "false",
            # Authentication has tests of its own (test_auth.py); elsewhere
            # requests are the anonymous caller's.
            "TUNEYARD_AUTH_REQUIRED": "false",
            **settings,
        }
        app = create_app(load_settings(_env_file=None, **values))
        if prepare is not None:
            prepare(app)
        server = ServedAsInProduction(app, host="127.0.0.1", port=port)
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(app_client: AppFactory, clean_database: str) -> TestClient:
    return await app_client(clean_database)


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """The simulator in-process on a real port; pages of 3 so walks cross pages."""
    async with Simulator(training_seconds=0.5, page_size=3, seed=5) as sim:
        yield sim


LiveApp = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def live_app(
    app_client: AppFactory, clean_database: str, simulator: Simulator
) -> LiveApp:
    """The app with its workers, pointed at the simulator, reachable by it."""

    async def start(**settings: str) -> TestClient:
        port = free_port()
        values = {
            "REPLICATE_API_TOKEN": simulator.token,
            "REPLICATE_BASE_URL": simulator.url,
            "REPLICATE_WEBHOOK_SECRET": simulator.secret,
            "TUNEYARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "TUNEYARD_WORKERS": "true",
            "TUNEYARD_WORKER_POLL_INTERVAL": "0.3",
            "TUNEYARD_RECONCILE_AFTER": "1",
            "TUNEYARD_REPLICATE_TIMEOUT": "2",
            **settings,
        }
        return await app_client(clean_database, port=port, **values)

    return start
