"""Submission, cancellation and destinations with workers running, against the
simulator; the app runs in-process on a real port that the simulator calls back."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from service import destinations
from service.domain.names import ModelRef
from service.replicate.client import ReplicateClient
from service.replicate.ratelimit import Kind, RateLimiter
from service.resources import REPLICATE, SETTINGS
from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
)
from service.store import trainings as store
from service.workers.submitter import Submitter

from ..support.simulator import Simulator, wait_until
from .conftest import LiveApp

TRAINER = f"{FLUX_DEV_LORA_TRAINER}:{FLUX_DEV_LORA_TRAINER_VERSION}"
INPUT = {"input_images": "https://example.com/faces.zip"}


async def submit(client: TestClient, **changes: Any) -> dict[str, Any]:
    body = {"destination": "local/faces", "trainer": TRAINER, "input": INPUT, **changes}
    response = await client.post("/v1/trainings", json=body)
    assert response.status == 202, await response.text()
    return await response.json()


async def until_status(client: TestClient, training_id: str, *statuses: str) -> dict:
    async def reached() -> dict | None:
        training = await (await client.get(f"/v1/trainings/{training_id}")).json()
        return training if training["status"] in statuses else None

    return await wait_until(reached, message=f"status in {statuses}")


async def test_input_replicate_refuses_fails_the_training_with_its_message(
    live_app: LiveApp, simulator: Simulator
) -> None:
    client = await live_app()

    created = await submit(client, input={"steps": "a thousand"})
    failed = await until_status(client, created["id"], "failed")

    assert "input_images" in failed["error"]
    assert failed["replicate_id"] is None
    assert await simulator.trainings() == []


async def test_destination_replicate_refuses_to_create_fails_the_training(
    live_app: LiveApp, simulator: Simulator
) -> None:
    client = await live_app()

    created = await submit(client, destination="someone-else/faces")
    failed = await until_status(client, created["id"], "failed")

    assert failed["error"].startswith("destination someone-else/faces:")


async def test_destination_settings_of_the_training_are_used_to_create_it(
    live_app: LiveApp, simulator: Simulator
) -> None:
    client = await live_app()

    created = await submit(
        client,
        destination_settings={
            "visibility": "public",
            "hardware": "gpu-t4",
            "description": "x",
        },
    )
    await until_status(client, created["id"], "succeeded")

    async with (
        simulator.api_session() as replicate,
        replicate.get("/v1/models/local/faces") as response,
    ):
        model = await response.json()
    assert (model["visibility"], model["description"]) == ("public", "x")


async def test_concurrent_ensures_of_one_destination_make_one_model(
    live_app: LiveApp, simulator: Simulator, pool: asyncpg.Pool
) -> None:
    client = await live_app(TUNEYARD_WORKERS="false")
    app = client.server.app
    await pool.execute(
        "INSERT INTO destinations (owner, name) VALUES ('local', 'faces')"
    )

    await asyncio.gather(
        *(
            destinations.ensure(
                pool, app[REPLICATE], app[SETTINGS], ModelRef("local", "faces")
            )
            for _ in range(4)
        )
    )

    assert (await simulator.stats())["creations"] == {"models": 1}
    assert await pool.fetchval("SELECT ensured_at IS NOT NULL FROM destinations")


async def test_cancelling_a_running_training_cancels_it_on_replicate(
    live_app: LiveApp, simulator: Simulator
) -> None:
    await simulator.set_faults(training_hang_rate=1.0)
    client = await live_app()
    created = await submit(client)
    running = await until_status(client, created["id"], "submitted", "running")

    response = await client.post(f"/v1/trainings/{created['id']}/cancel")

    assert response.status == 200
    assert (await response.json())["status"] == "canceled"
    on_replicate = await simulator.training(running["replicate_id"])
    assert on_replicate["status"] == "canceled"


async def test_cancel_that_cannot_reach_replicate_is_retried_by_the_reconciler(
    live_app: LiveApp, simulator: Simulator
) -> None:
    await simulator.set_faults(training_hang_rate=1.0)
    client = await live_app()
    created = await submit(client)
    running = await until_status(client, created["id"], "submitted", "running")
    await simulator.set_faults(error_rate=1.0)

    response = await client.post(f"/v1/trainings/{created['id']}/cancel")
    deferred = await response.json()
    await simulator.set_faults(error_rate=0.0)
    cancelled = await until_status(client, created["id"], "canceled")

    assert response.status == 202
    assert deferred["cancel_requested_at"] is not None
    assert cancelled["status"] == "canceled"
    assert (await simulator.training(running["replicate_id"]))["status"] == "canceled"


async def test_webhook_secret_is_fetched_from_replicate_when_not_configured(
    live_app: LiveApp, simulator: Simulator
) -> None:
    client = await live_app(
        REPLICATE_WEBHOOK_SECRET="", TUNEYARD_RECONCILE_AFTER="3600"
    )

    created = await submit(client)
    done = await until_status(client, created["id"], "succeeded")

    events = await (await client.get(f"/v1/trainings/{created['id']}/events")).json()
    # Polling is an hour away, so only a verified webhook can have finished it.
    assert done["version"] is not None
    assert ("webhook", "succeeded", True) in [
        (e["source"], e["status"], e["applied"]) for e in events["results"]
    ]


async def test_transient_failures_are_retried_until_the_training_is_submitted(
    live_app: LiveApp, simulator: Simulator
) -> None:
    await simulator.set_faults(throttle_storm_seconds=2)
    client = await live_app()

    created = await submit(client)
    waiting = await until_status(client, created["id"], "queued")
    done = await until_status(client, created["id"], "succeeded")

    assert waiting["status"] == "queued"
    assert done["attempts"] >= 1
    assert len(await simulator.trainings()) == 1


async def test_attempt_whose_claim_lapsed_while_it_waited_to_create_sends_nothing(
    live_app: LiveApp, simulator: Simulator, pool: asyncpg.Pool, clean_database: str
) -> None:
    # Replicate throttles the account, so a create waits its turn for longer
    # than the claim's lease, and the training is claimed again, here by the
    # same worker. Both attempts reach their turn; exactly one may send.
    client = await live_app(TUNEYARD_WORKERS="false")
    settings = client.server.app[SETTINGS]
    created = await submit(client)
    limiter = RateLimiter(60_000, 60_000)
    async with aiohttp.ClientSession() as session:
        replicate = ReplicateClient(
            session, simulator.url, SecretStr(simulator.token), limiter=limiter
        )
        await destinations.ensure(pool, replicate, settings, ModelRef("local", "faces"))
        submitter = Submitter(pool, clean_database, replicate, settings)
        limiter.pause(Kind.CREATE, 2.0)
        attempts = []
        for _ in range(2):
            async with pool.acquire() as conn:
                [record] = await store.claim(
                    conn, store.Queue.QUEUED, 1, submitter.lease
                )
                attempts.append(asyncio.create_task(submitter.handle(record)))
                await asyncio.sleep(0.2)
                # The lease runs out while the attempt waits.
                await conn.execute(
                    "UPDATE trainings SET next_attempt_at = now() WHERE id = $1",
                    created["id"],
                )
        await asyncio.gather(*attempts)

    row = await pool.fetchrow(
        "SELECT status, replicate_id FROM trainings WHERE id = $1", created["id"]
    )
    made = await simulator.trainings()
    assert [t["id"] for t in made] == [row["replicate_id"]]
    assert row["status"] in ("submitted", "running", "succeeded")


async def test_marking_a_create_sent_renews_the_claim_for_the_create(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    created = await submit(client)
    async with pool.acquire() as conn:
        [mine] = await store.claim(conn, store.Queue.QUEUED, 1, 0.05)
        await asyncio.sleep(0.1)  # the claim's lease has run out
        assert await store.mark_create_sent(
            conn, created["id"], mine.claim_token, lease=60
        )

        taken = await store.claim(conn, store.Queue.QUEUED, 1, 60)

    assert taken == []
