"""GET /v1/trainings/{id}/events as a live stream of server-sent events."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from service.resources import EVENT_HUB
from service.store.trainings import EVENTS_CHANNEL
from service.streams import EventHub

from ..support.factories import TRAINER, replicate_training
from ..support.simulator import wait_until
from ..support.sse import ServerSentEvent, read_events
from ..support.webhooks import signed_webhook
from .conftest import WEBHOOK_SECRET

STREAM = {"Accept": "text/event-stream"}


async def submit(client: TestClient) -> str:
    response = await client.post(
        "/v1/trainings",
        json={"destination": "acme/faces", "trainer": TRAINER, "input": {}},
    )
    return (await response.json())["id"]


async def send_webhook(client: TestClient, training_id: str, status: str) -> None:
    body, headers = signed_webhook(
        WEBHOOK_SECRET, replicate_training("r8a", status).raw()
    )
    response = await client.post(
        f"/webhooks/replicate?training_id={training_id}", data=body, headers=headers
    )
    assert response.status == 200


async def collect(response: aiohttp.ClientResponse) -> list[ServerSentEvent]:
    return [event async for event in read_events(response)]


async def test_stream_shows_events_as_they_happen_and_ends_when_finished(
    client: TestClient,
) -> None:
    training_id = await submit(client)
    await send_webhook(client, training_id, "starting")

    response = await client.get(f"/v1/trainings/{training_id}/events", headers=STREAM)
    reading = asyncio.create_task(collect(response))
    await asyncio.sleep(0.2)
    await send_webhook(client, training_id, "processing")
    await send_webhook(client, training_id, "succeeded")
    events = await asyncio.wait_for(reading, timeout=10)

    assert response.headers["Content-Type"] == "text/event-stream"
    assert [e.event for e in events] == ["training.event"] * 3 + ["end"]
    assert [e.json()["status"] for e in events[:3]] == [
        "starting",
        "processing",
        "succeeded",
    ]
    assert [int(e.id) for e in events[:3]] == sorted(int(e.id) for e in events[:3])
    assert events[-1].json() == {"status": "succeeded"}


async def test_the_process_listens_for_events_only_while_a_stream_is_open(
    client: TestClient,
) -> None:
    hub = client.server.app[EVENT_HUB]
    training_id = await submit(client)
    await send_webhook(client, training_id, "starting")
    assert not hub.listening

    response = await client.get(f"/v1/trainings/{training_id}/events", headers=STREAM)
    reading = asyncio.create_task(collect(response))
    await wait_until(lambda: hub.listening, message="the hub listens")
    await send_webhook(client, training_id, "succeeded")
    events = await asyncio.wait_for(reading, timeout=10)

    assert [e.json().get("status") for e in events] == [
        "starting",
        "succeeded",
        "succeeded",
    ]
    await wait_until(lambda: not hub.listening, message="the hub stops listening")


async def test_a_stream_is_told_to_look_again_once_the_process_listens(
    clean_database: str,
) -> None:
    hub = EventHub(clean_database)
    subscription = hub.subscribe("trn_01JF0000000000000000000000")
    notify = await asyncpg.connect(clean_database)
    try:
        # Recorded before the process listens: this notification is lost to it...
        await notify.execute(
            "SELECT pg_notify($1, $2)", EVENTS_CHANNEL, subscription.training_id
        )
        hub.start()
        # ...so the stream is woken once it listens, to read the database again.
        assert await subscription.wait(10)
        assert hub.listening
        await notify.execute(
            "SELECT pg_notify($1, $2)", EVENTS_CHANNEL, subscription.training_id
        )
        assert await subscription.wait(10)
    finally:
        await hub.stop()
        await notify.close()


async def test_stream_resumes_after_last_event_id(client: TestClient) -> None:
    training_id = await submit(client)
    for status in ("starting", "processing", "succeeded"):
        await send_webhook(client, training_id, status)
    first = await collect(
        await client.get(f"/v1/trainings/{training_id}/events", headers=STREAM)
    )

    resumed = await collect(
        await client.get(
            f"/v1/trainings/{training_id}/events",
            headers={**STREAM, "Last-Event-ID": first[0].id or ""},
        )
    )

    assert [e.id for e in resumed[:-1]] == [e.id for e in first[1:-1]]
    assert resumed[-1].event == "end"


async def test_stream_of_unknown_training_is_a_404_problem(client: TestClient) -> None:
    response = await client.get(
        "/v1/trainings/trn_01JF0000000000000000000000/events", headers=STREAM
    )

    assert response.status == 404
    assert response.content_type == "application/problem+json"


async def test_bad_last_event_id_is_a_400(client: TestClient) -> None:
    training_id = await submit(client)

    response = await client.get(
        f"/v1/trainings/{training_id}/events",
        headers={**STREAM, "Last-Event-ID": "yesterday"},
    )

    assert response.status == 400


async def test_shutdown_ends_open_streams_at_once(client: TestClient) -> None:
    training_id = await submit(client)
    response = await client.get(f"/v1/trainings/{training_id}/events", headers=STREAM)
    reading = asyncio.create_task(collect(response))
    await asyncio.sleep(0.2)

    await client.server.app.shutdown()

    # Far less than the shutdown timeout (30 s) a stream held open would cost.
    events = await asyncio.wait_for(reading, timeout=5)
    assert events == []
