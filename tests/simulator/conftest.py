"""Fixtures for the simulator's tests: the simulator on a real loopback port, a
client of its API, and a webhook receiver. No database is involved."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from ..support.simulator import Simulator, WebhookReceiver
from .calls import create_model

# Quick clocks and short retry windows; every wait in the tests is on a
# condition with a generous deadline, never on these durations.
FAST: dict[str, Any] = {
    "training_seconds": 0.3,
    "webhook_retry_delay": 0.05,
    "webhook_retry_window": 3.0,
    "webhook_timeout": 2.0,
    "seed": 1234,
}


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(**FAST) as sim:
        yield sim


Started = tuple[Simulator, aiohttp.ClientSession]
StartSimulator = Callable[..., Awaitable[Started]]


@pytest.fixture
async def simulator_with() -> AsyncIterator[StartSimulator]:
    """Start a simulator with settings of the test's own, and a client of it."""
    started: list[Started] = []

    async def start(**settings: Any) -> Started:
        simulator = await Simulator(**{**FAST, **settings}).start()
        started.append((simulator, simulator.api_session()))
        return started[-1]

    yield start
    for simulator, session in started:
        await session.close()
        await simulator.stop()


@pytest.fixture
async def api(simulator: Simulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with simulator.api_session() as session:
        yield session


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as started:
        yield started


@pytest.fixture
async def destination(api: aiohttp.ClientSession) -> str:
    """A private model of the account's, ready to train into."""
    model = await create_model(api, "faces")
    return f"{model['owner']}/{model['name']}"
