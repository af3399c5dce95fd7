"""Tuneyard as processes on real ports, against the simulator on a real port."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
)

from ..support.processes import TuneyardProcess, create_token, free_port
from ..support.simulator import Simulator, wait_until

TRAINER = f"{FLUX_DEV_LORA_TRAINER}:{FLUX_DEV_LORA_TRAINER_VERSION}"
INPUT = {"input_images": "https://example.com/faces.zip", "steps": 10}

# Short clocks, so lost webhooks and unanswered creates are dealt with in seconds.
FAST = {
    "TUNEYARD_WORKER_POLL_INTERVAL": "0.5",
    "TUNEYARD_RECONCILE_AFTER": "2",
    "TUNEYARD_SETTLE_WINDOW": "3",
    "TUNEYARD_REPLICATE_TIMEOUT": "2",
    "TUNEYARD_SHUTDOWN_TIMEOUT": "5",
}

ServiceFactory = Callable[..., Awaitable[TuneyardProcess]]


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(
        training_seconds=0.5, webhook_retry_delay=0.2, webhook_retry_window=5, seed=11
    ) as sim:
        yield sim


@pytest.fixture
def api_token(clean_database: str) -> str:
    """A token for the tests' caller, made with `tuneyard tokens create`."""
    return create_token(clean_database, "acceptance")


@pytest.fixture
async def start_service(
    tmp_path: Path, clean_database: str, simulator: Simulator, api_token: str
) -> AsyncIterator[ServiceFactory]:
    """Start `tuneyard serve` processes against the simulator; all stop after.

    Authentication is on, as in production; each process carries the headers
    that authenticate as the tests' caller.
    """
    started: list[TuneyardProcess] = []

    async def start(**settings: str) -> TuneyardProcess:
        port = settings.pop("TUNEYARD_PORT", str(free_port()))
        values = {
            "DATABASE_URL": clean_database,
            "REPLICATE_API_TOKEN": simulator.token,
            "REPLICATE_BASE_URL": simulator.url,
            "REPLICATE_WEBHOOK_SECRET": simulator.secret,
            "TUNEYARD_PORT": port,
            "TUNEYARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
            **FAST,
            **settings,
        }
        service = TuneyardProcess(tmp_path, "serve", **values).start()
        service.headers = {"Authorization": f"Bearer {api_token}"}
        started.append(service)
        await service.wait_healthy()
        return service

    yield start
    for service in started:
        if service.exit_code is None:
            service.signal(signal.SIGTERM)
    for service in started:
        try:
            await service.wait(timeout=15)
        except AssertionError:
            service.kill()


async def submit(
    service: TuneyardProcess,
    destination: str = "local/faces",
    *,
    training_input: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    callback_url: str | None = None,
) -> dict[str, Any]:
    headers = dict(service.headers)
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    body: dict[str, Any] = {
        "destination": destination,
        "trainer": TRAINER,
        "input": training_input or INPUT,
    }
    if callback_url is not None:
        body["callback_url"] = callback_url
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{service.url}/v1/trainings", json=body, headers=headers
        ) as response,
    ):
        assert response.status == 202, await response.text()
        return await response.json()


async def get_json(service: TuneyardProcess, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{service.url}{path}", headers=service.headers) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_finished(
    service: TuneyardProcess, training_id: str, *, timeout: float = 60
) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        training = await get_json(service, f"/v1/trainings/{training_id}")
        return (
            training
            if training["status"] in ("succeeded", "failed", "canceled")
            else None
        )

    return await wait_until(finished, timeout=timeout, interval=0.2, message="finished")


async def wait_all_finished(
    service: TuneyardProcess, ids: list[str], *, timeout: float = 120
) -> list[dict[str, Any]]:
    return list(
        await asyncio.gather(*(wait_finished(service, i, timeout=timeout) for i in ids))
    )
