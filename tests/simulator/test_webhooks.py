"""Webhooks: which events are sent, signed per Standard Webhooks, and how the
terminal one is retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook

from service.simulator.webhooks import DeliveryLog, WebhookMessage, WebhookSender

from ..support.processes import free_port
from ..support.simulator import Simulator, WebhookReceiver, wait_until
from .calls import create_model, create_training, get_json, wait_for_status
from .conftest import StartSimulator


def statuses_of(receiver: WebhookReceiver) -> list[str]:
    return [json.loads(body)["status"] for body in receiver.bodies()]


async def completed_delivered(receiver: WebhookReceiver) -> bool:
    return any(
        json.loads(hook.body)["status"] == "succeeded" and hook.answered == 200
        for hook in receiver.received
    )


async def test_start_and_completed_webhooks_arrive_signed_with_the_training(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    created = await create_training(
        api,
        destination,
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )

    await wait_until(lambda: completed_delivered(receiver))

    verifier = Webhook(simulator.secret)
    start, completed = [
        verifier.verify(hook.body, hook.headers) for hook in receiver.received
    ]
    assert start["id"] == completed["id"] == created["id"]
    assert start["status"] == "starting"
    assert completed["status"] == "succeeded"
    assert completed == await get_json(api, f"/v1/trainings/{created['id']}")
    assert "destination" not in completed
    version_id = completed["output"]["version"].split(":")[1]
    versions = await get_json(api, f"/v1/models/{destination}/versions")
    assert versions["results"][0]["id"] == version_id
    model = await get_json(api, f"/v1/models/{destination}")
    assert model["latest_version"]["id"] == version_id


async def test_webhook_headers_follow_standard_webhooks(
    simulator: Simulator, api: aiohttp.ClientSession, receiver: WebhookReceiver
) -> None:
    await create_model(api, "faces")
    await create_training(
        api, "local/faces", webhook=receiver.url, webhook_events_filter=["start"]
    )

    [hook] = await wait_until(lambda: receiver.received)

    assert hook.headers["webhook-id"].startswith("msg_")
    assert hook.headers["webhook-timestamp"].isdigit()
    assert hook.headers["webhook-signature"].startswith("v1,")
    assert hook.headers["content-type"] == "application/json"
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "QUJD" * 8).verify(hook.body, hook.headers)


async def test_webhooks_without_a_filter_come_on_output_and_completion(
    api: aiohttp.ClientSession, receiver: WebhookReceiver, destination: str
) -> None:
    created = await create_training(api, destination, webhook=receiver.url)
    await wait_for_status(api, created["id"])

    await wait_until(lambda: completed_delivered(receiver))

    output, completed = [json.loads(body) for body in receiver.bodies()]
    assert output["status"] == "processing"
    assert set(output["output"]) == {"weights"}
    assert completed["output"]["weights"] == output["output"]["weights"]
    assert completed["status"] == "succeeded"


async def test_logs_webhooks_within_the_throttle_window_are_coalesced(
    simulator_with: StartSimulator, receiver: WebhookReceiver
) -> None:
    # A window far longer than the run: after the first logs webhook, the rest
    # wait, and the terminal webhook then carries them all.
    _, api = await simulator_with(webhook_throttle=30.0)
    await create_model(api, "faces")
    await create_training(
        api,
        "local/faces",
        webhook=receiver.url,
        webhook_events_filter=["logs", "completed"],
    )

    await wait_until(lambda: completed_delivered(receiver))

    assert statuses_of(receiver) == ["processing", "succeeded"]


async def test_throttled_logs_webhook_goes_out_after_the_window(
    simulator_with: StartSimulator, receiver: WebhookReceiver
) -> None:
    _, api = await simulator_with(webhook_throttle=1.0)
    await create_model(api, "faces")
    created = await create_training(
        api, "local/faces", webhook=receiver.url, webhook_events_filter=["logs"]
    )
    finished = await wait_for_status(api, created["id"])

    await wait_until(lambda: len(receiver.received) == 2)

    first, last = [json.loads(body) for body in receiver.bodies()]
    assert first["status"] == "processing"
    assert last["logs"] == finished["logs"]


async def test_terminal_webhook_is_retried_under_one_id_until_answered_2xx(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    receiver.answer_with(503, 500)
    created = await create_training(
        api, destination, webhook=receiver.url, webhook_events_filter=["completed"]
    )

    await wait_until(lambda: completed_delivered(receiver))

    assert [hook.answered for hook in receiver.received] == [503, 500, 200]
    assert len({hook.webhook_id for hook in receiver.received}) == 1
    verifier = Webhook(simulator.secret)
    for hook in receiver.received:
        verifier.verify(hook.body, hook.headers)
    attempts = await simulator.webhooks(created["id"])
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [
        (1, 503),
        (2, 500),
        (3, 200),
    ]
    assert len({a["sent_at"] for a in attempts}) == 3


async def test_intermediate_webhook_is_sent_once_even_when_refused(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    receiver.answer_with(500)
    created = await create_training(
        api,
        destination,
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )

    await wait_until(lambda: completed_delivered(receiver))

    attempts = await simulator.webhooks(created["id"])
    assert [(a["event"], a["status_code"]) for a in attempts] == [
        ("start", 500),
        ("completed", 200),
    ]


async def test_redirect_is_not_followed_and_counts_as_a_failure(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    receiver.redirect_to(f"{receiver.base_url}/elsewhere")
    created = await create_training(
        api, destination, webhook=receiver.url, webhook_events_filter=["completed"]
    )

    attempts = await wait_until(lambda: _at_least(simulator.webhooks(created["id"]), 2))

    assert {a["status_code"] for a in attempts} == {307}
    assert all(hook.path != "/elsewhere" for hook in receiver.received)


async def test_webhook_attempt_that_times_out_is_retried(
    simulator_with: StartSimulator, receiver: WebhookReceiver
) -> None:
    receiver.hold_next(3.0)
    simulator, api = await simulator_with(webhook_timeout=0.2)
    await create_model(api, "faces")
    created = await create_training(
        api, "local/faces", webhook=receiver.url, webhook_events_filter=["completed"]
    )

    attempts = await wait_until(lambda: _delivered(simulator.webhooks(created["id"])))

    first, *_, last = attempts
    assert first["status_code"] is None
    assert first["error"].startswith(("TimeoutError", "ServerTimeoutError"))
    assert last["status_code"] == 200


async def test_unreachable_webhook_is_recorded_and_retried(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/hook"
    created = await create_training(
        api, destination, webhook=nowhere, webhook_events_filter=["completed"]
    )

    attempts = await wait_until(lambda: _at_least(simulator.webhooks(created["id"]), 2))

    assert all(a["status_code"] is None for a in attempts)
    assert "ClientConnectorError" in attempts[0]["error"]
    assert [a["attempt"] for a in attempts[:2]] == [1, 2]


class _Clock:
    """Time that passes only when the sender sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def test_terminal_webhook_retries_back_off_for_about_a_minute(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.answer_with(*[503] * 20)
    clock = _Clock()
    log = DeliveryLog(100)
    sender = WebhookSender(
        session,
        "whsec_" + "QUJD" * 8,
        log,
        timeout=5,
        retry_delay=1,
        retry_window=60,
        clock=clock,
        sleep=clock.sleep,
    )
    message = WebhookMessage("t1", "completed", receiver.url, "msg_1", b"{}")

    await sender.deliver(message)

    assert clock.sleeps == [1, 2, 4, 8, 16]
    assert [d.attempt for d in log.entries()] == [1, 2, 3, 4, 5, 6]
    assert len(receiver.received) == 6


async def _at_least(attempts: Any, count: int) -> list[dict[str, Any]] | None:
    found = await attempts
    return found if len(found) >= count else None


async def _delivered(attempts: Any) -> list[dict[str, Any]] | None:
    found = await attempts
    return found if found and found[-1]["status_code"] == 200 else None
