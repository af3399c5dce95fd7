"""Signed callbacks to callers: delivered in order, retried, redeliverable."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
)

from ..support.simulator import WebhookReceiver, wait_until
from .conftest import LiveApp

TRAINER = f"{FLUX_DEV_LORA_TRAINER}:{FLUX_DEV_LORA_TRAINER_VERSION}"
SECRET = "whsec_" + base64.b64encode(b"tuneyard-callbacks-secret-one!!").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"tuneyard-callbacks-secret-old!!").decode()
CALLBACKS = {
    "TUNEYARD_WEBHOOK_SECRET": SECRET,
    "TUNEYARD_CALLBACK_RETRY_SCHEDULE": "0.2,0.2,0.2",
    "TUNEYARD_CALLBACK_TIMEOUT": "2",
}


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as receiver:
        yield receiver


async def submit(client: TestClient, callback_url: str, **changes: Any) -> dict:
    body = {
        "destination": "local/faces",
        "trainer": TRAINER,
        "input": {"input_images": "https://example.com/faces.zip"},
        "callback_url": callback_url,
        **changes,
    }
    response = await client.post("/v1/trainings", json=body)
    assert response.status == 202, await response.text()
    return await response.json()


def delivered(receiver: WebhookReceiver) -> list[dict]:
    return [json.loads(hook.body) for hook in receiver.received if hook.answered == 200]


async def until_delivered(receiver: WebhookReceiver, final: str) -> list[dict]:
    def done() -> list[dict] | None:
        events = delivered(receiver)
        return events if final in [e["type"] for e in events] else None

    return await wait_until(done, message=f"{final} delivered")


async def test_every_status_change_is_called_back_signed_and_in_order(
    live_app: LiveApp, receiver: WebhookReceiver
) -> None:
    client = await live_app(**CALLBACKS)

    created = await submit(client, receiver.url)
    events = await until_delivered(receiver, "training.succeeded")

    verifier = Webhook(SECRET)
    for hook in receiver.received:
        assert verifier.verify(hook.body, hook.headers) is not None
    types = [e["type"] for e in events]
    assert types[0] == "training.queued"
    assert types[-1] == "training.succeeded"
    assert "training.submitted" in types
    assert types == sorted(
        types,
        key=[
            "training.queued",
            "training.submitted",
            "training.running",
            "training.succeeded",
        ].index,
    )
    assert {e["training"]["id"] for e in events} == {created["id"]}
    final = events[-1]
    assert final["training"]["status"] == "succeeded"
    assert final["version"]["id"] == final["training"]["version"]["id"]
    assert final["version"]["lineage"]["training_id"] == created["id"]


async def test_failed_delivery_is_retried_under_the_same_webhook_id(
    live_app: LiveApp, receiver: WebhookReceiver
) -> None:
    receiver.answer_with(500, 503)
    client = await live_app(**CALLBACKS)

    await submit(client, receiver.url)
    await until_delivered(receiver, "training.succeeded")

    first_three = receiver.received[:3]
    assert [hook.answered for hook in first_three] == [500, 503, 200]
    assert len({hook.webhook_id for hook in first_three}) == 1
    assert json.loads(first_three[2].body)["type"] == "training.queued"
    # Each attempt is signed anew, with its own timestamp.
    assert Webhook(SECRET).verify(first_three[0].body, first_three[0].headers)


async def test_a_later_event_waits_for_an_earlier_one_to_be_delivered(
    live_app: LiveApp, receiver: WebhookReceiver
) -> None:
    receiver.answer_with(500, 500, 500)
    client = await live_app(**CALLBACKS)

    await submit(client, receiver.url)
    await until_delivered(receiver, "training.succeeded")

    order = [json.loads(hook.body)["type"] for hook in receiver.received]
    assert order[:4] == ["training.queued"] * 4


async def test_retry_after_on_429_is_honoured(
    live_app: LiveApp, receiver: WebhookReceiver, pool: asyncpg.Pool
) -> None:
    receiver.answer_with(429, headers={"Retry-After": "2"})
    client = await live_app(**CALLBACKS)

    await submit(client, receiver.url)
    await until_delivered(receiver, "training.queued")
    # The receiver has the second attempt before the notifier records it.
    await wait_until(
        lambda: pool.fetchval("SELECT count(*) >= 2 FROM notification_attempts"),
        message="both attempts recorded",
    )

    rows = await pool.fetch(
        "SELECT started_at FROM notification_attempts ORDER BY started_at LIMIT 2"
    )
    assert rows[1]["started_at"] - rows[0]["started_at"] >= timedelta(seconds=1.9)


async def test_gone_stops_delivery_at_once(
    live_app: LiveApp, receiver: WebhookReceiver, pool: asyncpg.Pool
) -> None:
    receiver.answer_with(410)
    client = await live_app(**CALLBACKS)

    created = await submit(client, receiver.url)
    await until_delivered(receiver, "training.succeeded")

    listed = await (
        await client.get(f"/v1/trainings/{created['id']}/notifications")
    ).json()
    queued = listed["results"][0]
    assert (queued["type"], queued["status"], queued["attempts"]) == (
        "training.queued",
        "failed",
        1,
    )
    assert queued["attempt_log"][0]["status_code"] == 410


async def test_redirect_is_not_followed(
    live_app: LiveApp, receiver: WebhookReceiver
) -> None:
    receiver.redirect_to(f"{receiver.base_url}/elsewhere")
    client = await live_app(**{**CALLBACKS, "TUNEYARD_CALLBACK_RETRY_SCHEDULE": "0.1"})

    created = await submit(client, receiver.url)

    async def failed() -> dict | None:
        listed = await (
            await client.get(f"/v1/trainings/{created['id']}/notifications")
        ).json()
        first = listed["results"][0]
        return first if first["status"] == "failed" else None

    notification = await wait_until(failed, message="the redirect given up on")
    assert [a["status_code"] for a in notification["attempt_log"]] == [307, 307]
    assert all(hook.path != "/elsewhere" for hook in receiver.received)


async def test_event_failed_after_the_last_attempt_can_be_redelivered(
    live_app: LiveApp, receiver: WebhookReceiver
) -> None:
    receiver.answer_with(500, 500)
    client = await live_app(**{**CALLBACKS, "TUNEYARD_CALLBACK_RETRY_SCHEDULE": "0.1"})
    created = await submit(client, receiver.url)
    await until_delivered(receiver, "training.succeeded")
    listed = await (
        await client.get(f"/v1/trainings/{created['id']}/notifications")
    ).json()
    failed = listed["results"][0]
    assert failed["status"] == "failed"

    response = await client.post(f"/v1/notifications/{failed['id']}/redeliver")
    await wait_until(
        lambda: [
            h
            for h in receiver.received
            if h.webhook_id == failed["id"] and h.answered == 200
        ],
        message="the redelivery",
    )

    assert response.status == 202
    again = await (
        await client.get(f"/v1/trainings/{created['id']}/notifications")
    ).json()
    assert again["results"][0]["status"] == "delivered"
    assert again["results"][0]["attempts"] == 3


async def test_failed_events_of_a_caller_since_a_time_are_redelivered(
    live_app: LiveApp, receiver: WebhookReceiver, pool: asyncpg.Pool
) -> None:
    receiver.answer_with(410, 410, 410)
    client = await live_app(**CALLBACKS)
    before = datetime.now(UTC) - timedelta(seconds=1)
    created = await submit(client, receiver.url)
    await wait_until(
        lambda: pool.fetchval(
            "SELECT count(*) = 3 FROM notifications WHERE status = 'failed'"
        ),
        message="three failed events",
    )

    response = await client.post(
        "/v1/notifications/redeliver",
        json={"caller": "anonymous", "since": before.isoformat()},
    )

    assert (await response.json()) == {"redelivered": 3}
    events = await until_delivered(receiver, "training.succeeded")
    assert events[0]["type"] == "training.queued"
    assert created["id"] == events[0]["training"]["id"]


async def test_rotating_secrets_sign_with_both_so_either_verifies(
    live_app: LiveApp, receiver: WebhookReceiver
) -> None:
    client = await live_app(
        **{**CALLBACKS, "TUNEYARD_WEBHOOK_SECRET": f"{SECRET},{OLD_SECRET}"}
    )

    await submit(client, receiver.url)
    await until_delivered(receiver, "training.queued")

    hook = receiver.received[0]
    assert len(hook.headers["webhook-signature"].split()) == 2
    assert Webhook(SECRET).verify(hook.body, hook.headers)
    assert Webhook(OLD_SECRET).verify(hook.body, hook.headers)


async def test_callback_refused_when_callbacks_cannot_be_signed(
    live_app: LiveApp, receiver: WebhookReceiver
) -> None:
    client = await live_app()

    response = await client.post(
        "/v1/trainings",
        json={
            "destination": "local/faces",
            "trainer": TRAINER,
            "input": {},
            "callback_url": receiver.url,
        },
    )

    assert response.status == 422
    assert "TUNEYARD_WEBHOOK_SECRET" in (await response.json())["detail"]


@pytest.mark.parametrize(
    ("allowed", "url", "status"),
    [
        ("hooks.example.com", "https://hooks.example.com/x", 202),
        ("*.example.com", "https://a.b.example.com/x", 202),
        ("hooks.example.com", "https://evil.example.net/x", 422),
        ("*.example.com", "https://example.com.evil.net/x", 422),
    ],
)
async def test_callback_hosts_allow_list(
    live_app: LiveApp, allowed: str, url: str, status: int
) -> None:
    client = await live_app(
        **CALLBACKS, TUNEYARD_CALLBACK_HOSTS=allowed, TUNEYARD_WORKERS="false"
    )

    response = await client.post(
        "/v1/trainings",
        json={
            "destination": "local/faces",
            "trainer": TRAINER,
            "input": {},
            "callback_url": url,
        },
    )

    assert response.status == status


async def test_notifications_of_unknown_training_and_notification_are_404(
    live_app: LiveApp,
) -> None:
    client = await live_app(**CALLBACKS, TUNEYARD_WORKERS="false")

    listed = await client.get(
        "/v1/trainings/trn_01JF0000000000000000000000/notifications"
    )
    redelivered = await client.post("/v1/notifications/msg_nothing/redeliver")

    assert listed.status == 404
    assert redelivered.status == 404


async def test_redelivering_a_pending_event_is_a_conflict(
    live_app: LiveApp, receiver: WebhookReceiver, pool: asyncpg.Pool
) -> None:
    client = await live_app(**CALLBACKS, TUNEYARD_WORKERS="false")
    created = await submit(client, receiver.url)
    notification_id = await pool.fetchval(
        "SELECT id FROM notifications WHERE training_id = $1", created["id"]
    )

    response = await client.post(f"/v1/notifications/{notification_id}/redeliver")

    assert response.status == 409
