"""Calls the simulator's tests make over and over."""

from __future__ import annotations

from typing import Any

import aiohttp

from service.simulator.state import TERMINAL_STATUSES
from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
)

from ..support.simulator import wait_until

FLUX_TRAININGS = (
    f"/v1/models/{FLUX_DEV_LORA_TRAINER}/versions/"
    f"{FLUX_DEV_LORA_TRAINER_VERSION}/trainings"
)
IMAGES = {"input_images": "https://example.com/faces.zip"}
PROBLEM_JSON = "application/problem+json"


async def create_model(
    api: aiohttp.ClientSession, name: str, visibility: str = "private", **extra: Any
) -> dict[str, Any]:
    body = {"owner": "local", "name": name, "visibility": visibility}
    body.update(hardware="gpu-t4", **extra)
    async with api.post("/v1/models", json=body) as response:
        assert response.status == 201, await response.text()
        return await response.json()


async def create_training(
    api: aiohttp.ClientSession, destination: str, **body: Any
) -> dict[str, Any]:
    """Start a training of the flux trainer; `body` adds or overrides fields."""
    payload = {"destination": destination, "input": dict(IMAGES), **body}
    async with api.post(FLUX_TRAININGS, json=payload) as response:
        assert response.status == 201, await response.text()
        return await response.json()


async def get_json(api: aiohttp.ClientSession, path: str) -> Any:
    async with api.get(path) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_for_status(
    api: aiohttp.ClientSession, training_id: str, *statuses: str
) -> dict[str, Any]:
    """The training once its status is one of `statuses` (default: terminal)."""
    wanted = set(statuses) or TERMINAL_STATUSES

    async def reached() -> dict[str, Any] | None:
        training = await get_json(api, f"/v1/trainings/{training_id}")
        return training if training["status"] in wanted else None

    return await wait_until(reached, message=f"training {training_id} {wanted}")


async def walk(api: aiohttp.ClientSession, path: str) -> list[dict[str, Any]]:
    """Every result of a list, following `next` to the end."""
    results: list[dict[str, Any]] = []
    url: str | None = path
    while url is not None:
        page = await get_json(api, url)
        results.extend(page["results"])
        url = page["next"]
    return results
