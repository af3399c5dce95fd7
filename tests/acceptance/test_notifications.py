"""Callbacks and live streams across processes: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook

from ..support.processes import TuneyardProcess
from ..support.simulator import Simulator, WebhookReceiver, wait_until
from ..support.sse import read_events
from .conftest import ServiceFactory, submit, wait_all_finished

SECRET = "whsec_" + base64.b64encode(b"acceptance-callbacks-secret!!").decode()
CALLBACKS = {
    "TUNEYARD_WEBHOOK_SECRET": SECRET,
    "TUNEYARD_CALLBACK_RETRY_SCHEDULE": "1,1,1",
}
ORDER = [
    "training.queued",
    "training.submitted",
    "training.running",
    "training.succeeded",
]


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as receiver:
        yield receiver


async def submit_with_callback(
    service: TuneyardProcess, callback_url: str | None = None, n: int = 0
) -> str:
    created = await submit(
        service,
        training_input={"input_images": f"https://example.com/set-{n}.zip"},
        callback_url=callback_url,
    )
    return created["id"]


async def test_stream_on_one_replica_sees_a_training_finished_through_another(
    start_service: ServiceFactory, simulator: Simulator
) -> None:
    watcher = await start_service(TUNEYARD_WORKERS="false")
    worker = await start_service()
    training_id = await submit_with_callback(worker)

    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{watcher.url}/v1/trainings/{training_id}/events",
            headers={**watcher.headers, "Accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status == 200
        events = await asyncio.wait_for(_collect(read_events(response)), timeout=60)

    statuses = [e.json()["status"] for e in events if e.event == "training.event"]
    assert statuses[-1] == "succeeded"
    assert events[-1].event == "end"
    assert events[-1].json() == {"status": "succeeded"}
    [made] = await simulator.trainings()
    assert all(e.json()["replicate_id"] == made["id"] for e in events[:-1])


async def _collect(events: AsyncIterator) -> list:
    return [event async for event in events]


async def test_callback_survives_a_restart_between_retries(
    start_service: ServiceFactory,
    receiver: WebhookReceiver,
    clean_database: str,
) -> None:
    receiver.answer_with(500)
    service = await start_service(
        **{**CALLBACKS, "TUNEYARD_CALLBACK_RETRY_SCHEDULE": "3"}
    )
    training_id = await submit_with_callback(service, receiver.url)

    # The first attempt fails; stop the service before the retry comes due.
    await wait_until(lambda: receiver.received, message="the first attempt")
    service.signal(signal.SIGKILL)
    await service.wait()
    replacement = await start_service(**CALLBACKS)

    await wait_until(
        lambda: [
            h
            for h in receiver.received
            if h.answered == 200 and json.loads(h.body)["type"] == "training.succeeded"
        ],
        timeout=60,
        message="training.succeeded delivered",
    )
    conn = await asyncpg.connect(clean_database)
    try:
        pending = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE status <> 'delivered'"
        )
    finally:
        await conn.close()
    first = receiver.received[0]
    retried = [h for h in receiver.received if h.webhook_id == first.webhook_id]
    assert [h.answered for h in retried] == [500, 200]
    assert pending == 0
    assert replacement.exit_code is None
    assert training_id == json.loads(first.body)["training"]["id"]


async def test_two_replicas_deliver_each_event_once_and_in_order(
    start_service: ServiceFactory, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    services = [await start_service(**CALLBACKS), await start_service(**CALLBACKS)]

    ids = await asyncio.gather(
        *(submit_with_callback(services[i % 2], receiver.url, n=i) for i in range(20))
    )
    await wait_all_finished(services[0], list(ids))
    await wait_until(
        lambda: (
            sum(
                json.loads(h.body)["type"] == "training.succeeded"
                for h in receiver.received
            )
            >= 20
        ),
        timeout=60,
        message="every success called back",
    )

    deliveries = Counter(h.webhook_id for h in receiver.received)
    assert set(deliveries.values()) == {1}
    by_training: dict[str, list[str]] = defaultdict(list)
    verifier = Webhook(SECRET)
    for hook in receiver.received:
        event = verifier.verify(hook.body, hook.headers)
        by_training[event["training"]["id"]].append(event["type"])
    assert set(by_training) == set(ids)
    for types in by_training.values():
        assert types == sorted(types, key=ORDER.index)
        assert types[0] == "training.queued"
        assert types[-1] == "training.succeeded"
