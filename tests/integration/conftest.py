"""Tuneyard's app in-process on a real loopback port, against the test database."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.config import load_settings

WEBHOOK_SECRET = (
    "whsec_" + base64.b64encode(b"integration-tests-secret-key!!!").decode()
)

AppFactory = Callable[..., Awaitable[TestClient]]


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
        **settings: str,
    ) -> TestClient:
        values = {
            "DATABASE_URL": database_url,
            "REPLICATE_API_TOKEN": "r8_integration_tests",
            "REPLICATE_BASE_URL": "http://127.0.0.1:9",
            "REPLICATE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TUNEYARD_PUBLIC_URL": "http://127.0.0.1:9",
            "TUNEYARD_WORKERS": "false",
            **settings,
        }
        app = create_app(load_settings(_env_file=None, **values))
        if prepare is not None:
            prepare(app)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(app_client: AppFactory, clean_database: str) -> TestClient:
    return await app_client(clean_database)
