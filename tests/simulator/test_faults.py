"""Each fault, switched on through the admin API and observed from outside."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from service.simulator.faults import Faults, FaultSettings
from service.simulator.training_runner import FAILED_AFTER_RUN

from ..support.simulator import Simulator, WebhookReceiver, wait_until
from .calls import (
    FLUX_TRAININGS,
    IMAGES,
    PROBLEM_JSON,
    create_training,
    get_json,
    wait_for_status,
)
from .conftest import StartSimulator

FLUX_TRAININGS_ROUTE = "/v1/models/{owner}/{name}/versions/{version_id}/trainings"


async def test_latency_holds_every_api_answer(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await simulator.set_faults(latency_ms=300)
    started = time.monotonic()

    response = await api.get("/v1/account")

    # A lower bound only: a slow machine can add time, never remove it.
    assert time.monotonic() - started >= 0.3
    assert response.status == 200
    assert (await simulator.faults())["latency_ms"] == 300


async def test_error_rate_of_one_answers_every_api_request_5xx(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await simulator.set_faults(error_rate=1)

    responses = [await api.get("/v1/account") for _ in range(5)]

    assert all(r.status in (500, 502, 503) for r in responses)
    assert all(r.content_type == PROBLEM_JSON for r in responses)
    assert (await simulator.stats())["errors_injected"] == 5
    await simulator.set_faults(error_rate=0)
    assert (await api.get("/v1/account")).status == 200


async def test_throttle_storm_answers_429_until_switched_off(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await simulator.set_faults(throttle_storm=True)

    during = await api.get("/v1/account")
    faults = await simulator.faults()
    await simulator.set_faults(throttle_storm=False)
    after = await api.get("/v1/account")

    assert during.status == 429
    assert during.headers["Retry-After"] == "1"
    assert (await during.json())["detail"].startswith("Request was throttled.")
    assert faults["throttle_storm"] is True
    assert after.status == 200


async def test_timed_throttle_storm_ends_by_itself(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await simulator.set_faults(throttle_storm_seconds=0.5)
    during = await api.get("/v1/account")

    async def answered() -> bool:
        return (await api.get("/v1/account")).status == 200

    await wait_until(answered)
    assert during.status == 429
    assert (await simulator.faults())["throttle_storm"] is False


async def test_webhook_drop_rate_of_one_sends_nothing_and_says_so(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    await simulator.set_faults(webhook_drop_rate=1)
    created = await create_training(api, destination, webhook=receiver.url)
    await wait_for_status(api, created["id"])

    entries = await wait_until(lambda: _events(simulator, created["id"], 2))

    assert {e["fault"] for e in entries} == {"dropped"}
    assert all(e["status_code"] is None for e in entries)
    assert receiver.received == []


async def test_webhook_duplicate_rate_of_one_sends_each_twice_under_one_id(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    await simulator.set_faults(webhook_duplicate_rate=1)

    await create_training(
        api, destination, webhook=receiver.url, webhook_events_filter=["completed"]
    )

    await wait_until(lambda: len(receiver.received) == 2)
    first, second = receiver.received
    assert first.webhook_id == second.webhook_id
    assert first.body == second.body


async def test_webhook_delay_holds_each_webhook(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    await simulator.set_faults(webhook_delay_ms=500)

    created = await create_training(
        api, destination, webhook=receiver.url, webhook_events_filter=["start"]
    )

    [entry] = await wait_until(lambda: _events(simulator, created["id"], 1))
    assert entry["fault"] == "delayed"
    assert _seconds_between(created["created_at"], entry["sent_at"]) >= 0.5


async def test_webhook_reorder_delivers_completed_before_start(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    await simulator.set_faults(webhook_reorder_rate=1)

    await create_training(
        api,
        destination,
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )

    await wait_until(lambda: len(receiver.received) == 2)
    statuses = [json.loads(body)["status"] for body in receiver.bodies()]
    assert statuses == ["succeeded", "starting"]


async def test_training_failure_rate_fails_after_a_full_run(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    await simulator.set_faults(training_failure_rate=1)
    created = await create_training(api, destination)

    training = await wait_for_status(api, created["id"])

    assert training["status"] == "failed"
    assert training["error"] == FAILED_AFTER_RUN
    assert training["output"] is None
    assert "1000/1000 steps" in training["logs"]
    model = await get_json(api, f"/v1/models/{destination}")
    assert model["latest_version"] is None


async def test_training_hang_rate_keeps_it_processing_until_canceled(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    await simulator.set_faults(training_hang_rate=1)
    created = await create_training(api, destination)

    await wait_until(
        lambda: _logs_contain(api, created["id"], "Waiting for the trainer")
    )
    hung = await get_json(api, f"/v1/trainings/{created['id']}")
    canceled = await api.post(f"/v1/trainings/{created['id']}/cancel")

    assert hung["status"] == "processing"
    assert (await canceled.json())["status"] == "canceled"


async def test_hung_training_can_be_finished_through_the_admin_api(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    await simulator.set_faults(training_hang_rate=1)
    created = await create_training(api, destination)
    await wait_for_status(api, created["id"], "processing")

    finished = await simulator.finish_training(created["id"], "succeeded")

    assert finished["status"] == "succeeded"
    model = await get_json(api, f"/v1/models/{destination}")
    assert finished["output"]["version"].endswith(model["latest_version"]["id"])


async def test_lost_create_disconnects_but_the_training_is_made_and_runs(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    await simulator.set_faults(lost_create_rate=1)
    body = {"destination": destination, "input": IMAGES, "webhook": receiver.url}

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.post(FLUX_TRAININGS, json=body)

    [training] = await simulator.trainings(destination=destination)
    assert training["answer_lost"] is True
    assert training["webhook"] == receiver.url
    finished = await wait_for_status(api, training["id"])
    assert finished["status"] == "succeeded"
    await wait_until(lambda: len(receiver.received) == 2)
    stats = await simulator.stats()
    assert stats["lost_creates"] == 1
    assert stats["requests"][f"POST {FLUX_TRAININGS_ROUTE}"] == {"lost": 1}


async def test_faults_set_by_config_are_in_force_from_the_start(
    simulator_with: StartSimulator,
) -> None:
    simulator, api = await simulator_with(error_rate=1.0)

    response = await api.get("/v1/account")

    assert response.status >= 500
    assert (await simulator.faults())["error_rate"] == 1.0


@pytest.mark.parametrize("share", [0.3, 0.5, 0.7])
def test_same_seed_makes_the_same_decisions(share: float) -> None:
    settings = FaultSettings(error_rate=share, training_failure_rate=share)

    def decisions(seed: int) -> list[Any]:
        faults = Faults(settings, seed)
        return [(faults.injected_status(), faults.training_fate()) for _ in range(50)]

    assert decisions(42) == decisions(42)
    assert decisions(42) != decisions(43)


async def _events(
    simulator: Simulator, training_id: str, count: int
) -> list[dict[str, Any]] | None:
    entries = await simulator.webhooks(training_id)
    return entries if len(entries) >= count else None


async def _logs_contain(
    api: aiohttp.ClientSession, training_id: str, text: str
) -> bool:
    training = await get_json(api, f"/v1/trainings/{training_id}")
    return text in training["logs"]


def _seconds_between(earlier: str, later: str) -> float:
    def parse(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    return (parse(later) - parse(earlier)).total_seconds()
