"""The flow of a training end to end: Tuneyard processes against the simulator.

Counting is done on both sides: Tuneyard's own records through its API, and the
simulator's record of what reached "Replicate" through its admin API.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import aiohttp
import asyncpg
import pytest

from ..support.simulator import Simulator, wait_until
from ..support.webhooks import signed_webhook
from .conftest import (
    ServiceFactory,
    get_json,
    submit,
    wait_all_finished,
    wait_finished,
)


async def test_training_succeeds_with_its_version_recorded(
    start_service: ServiceFactory, simulator: Simulator
) -> None:
    service = await start_service()

    created = await submit(service, "local/faces")
    done = await wait_finished(service, created["id"])

    assert done["status"] == "succeeded"
    [on_replicate] = await simulator.trainings(destination="local/faces")
    assert done["replicate_id"] == on_replicate["id"]
    async with (
        simulator.api_session() as replicate,
        replicate.get("/v1/models/local/faces") as response,
    ):
        model = await response.json()
    assert done["version"]["id"] == model["latest_version"]["id"]
    version = await get_json(
        service, f"/v1/destinations/local/faces/versions/{done['version']['id']}"
    )
    assert version["lineage"]["training_id"] == created["id"]


@pytest.mark.parametrize(
    "faults",
    [
        {"webhook_duplicate_rate": 1.0},
        {"webhook_reorder_rate": 1.0},
        {"webhook_drop_rate": 1.0},
        {
            "webhook_duplicate_rate": 0.5,
            "webhook_reorder_rate": 0.5,
            "webhook_drop_rate": 0.3,
        },
    ],
    ids=["duplicated", "reordered", "dropped", "mixed"],
)
async def test_webhook_faults_do_not_change_the_outcome(
    start_service: ServiceFactory, simulator: Simulator, faults: dict
) -> None:
    await simulator.set_faults(**faults)
    service = await start_service()

    ids = [(await submit(service, f"local/faces-{i}"))["id"] for i in range(4)]
    done = await wait_all_finished(service, ids)

    assert [t["status"] for t in done] == ["succeeded"] * 4
    made = await simulator.trainings()
    assert sorted(t["replicate_id"] for t in done) == sorted(t["id"] for t in made)
    for training in done:
        page = await get_json(
            service, f"/v1/destinations/{training['destination']}/versions"
        )
        assert [v["id"] for v in page["results"]] == [training["version"]["id"]]


async def test_repeated_idempotency_key_creates_nothing_new(
    start_service: ServiceFactory, simulator: Simulator
) -> None:
    service = await start_service()

    first = await submit(service, idempotency_key="caller-job-7")
    again = await submit(service, idempotency_key="caller-job-7")
    await wait_finished(service, first["id"])
    third = await submit(service, idempotency_key="caller-job-7")

    assert first["id"] == again["id"] == third["id"]
    assert len(await simulator.trainings()) == 1
    listing = await get_json(service, "/v1/trainings")
    assert [t["id"] for t in listing["results"]] == [first["id"]]


@pytest.mark.parametrize(
    "faults",
    [{"lost_create_rate": 1.0}, {"lost_create_rate": 1.0, "webhook_drop_rate": 1.0}],
    ids=["settled-by-webhook", "settled-by-listing"],
)
async def test_lost_create_answer_leaves_exactly_one_replicate_training(
    start_service: ServiceFactory, simulator: Simulator, faults: dict
) -> None:
    await simulator.set_faults(**faults)
    service = await start_service()

    created = await submit(service)
    # Once the create is known lost, turn the fault off: had Tuneyard sent the
    # create again, it would now go through and show as a second training.
    await wait_until(simulator.trainings, message="the lost create was made")
    await simulator.set_faults(lost_create_rate=0.0)
    done = await wait_finished(service, created["id"])

    [made] = await simulator.trainings()
    assert made["answer_lost"]
    assert done["status"] == "succeeded"
    assert done["replicate_id"] == made["id"]
    await asyncio.sleep(2)
    assert len(await simulator.trainings()) == 1


async def test_service_killed_before_recording_the_create_answer_makes_one_training(
    start_service: ServiceFactory, simulator: Simulator, clean_database: str
) -> None:
    # Answers are held back, so the create is in flight long enough to kill the
    # service after it was sent and before its answer is recorded; webhooks are
    # dropped, so no start webhook settles it first. Only Replicate's list can.
    # The timeout leaves room above the latency on a loaded machine; the lease the
    # replacement waits out is three timeouts.
    await simulator.set_faults(latency_ms=1000, webhook_drop_rate=1.0)
    service = await start_service(TUNEYARD_REPLICATE_TIMEOUT="4")
    created = await submit(service)

    conn = await asyncpg.connect(clean_database)
    try:
        await wait_until(
            lambda: conn.fetchval(
                "SELECT create_sent_at IS NOT NULL AND replicate_id IS NULL "
                "FROM trainings WHERE id = $1",
                created["id"],
            ),
            message="the create was sent",
        )
        service.signal(signal.SIGKILL)
        await service.wait()
        await wait_until(simulator.trainings, message="the create arrived")
        await simulator.set_faults(latency_ms=0, webhook_drop_rate=0.0)
        replacement = await start_service(TUNEYARD_REPLICATE_TIMEOUT="4")
        done = await wait_finished(replacement, created["id"])
    finally:
        await conn.close()

    made = await simulator.trainings()
    assert len(made) == 1
    assert done["status"] == "succeeded"
    assert done["replicate_id"] == made[0]["id"]


async def test_bad_webhooks_get_4xx_and_never_5xx(
    start_service: ServiceFactory, simulator: Simulator
) -> None:
    service = await start_service()
    url = f"{service.url}/webhooks/replicate"
    good_body, good_headers = signed_webhook(
        simulator.secret, {"id": "r8x", "status": "processing"}
    )
    cases = [
        ({**good_headers, "webhook-signature": "v1,AAAA"}, good_body),
        ({**good_headers, "webhook-timestamp": "1000000000"}, good_body),
        ({k: v for k, v in good_headers.items() if k != "webhook-id"}, good_body),
        (good_headers, b'{"id": "r8x", "status": "tampered"}'),
        (*reversed(signed_webhook(simulator.secret, b"not json at all")),),
        (*reversed(signed_webhook(simulator.secret, b'{"no": "id"}')),),
    ]

    async with aiohttp.ClientSession() as http:
        statuses = []
        for headers, body in cases:
            async with http.post(url, data=body, headers=headers) as response:
                statuses.append(response.status)
                assert response.content_type == "application/problem+json"

    assert all(400 <= status < 500 for status in statuses), statuses


@pytest.mark.slow
async def test_two_services_handle_200_trainings_none_lost_none_doubled(
    start_service: ServiceFactory, simulator: Simulator
) -> None:
    services = [await start_service(), await start_service()]
    destinations = [f"local/team-{i}" for i in range(8)]

    created = await asyncio.gather(
        *(
            submit(
                services[i % 2],
                destinations[i % 8],
                training_input={"input_images": f"https://example.com/set-{i}.zip"},
            )
            for i in range(200)
        )
    )
    ids = [t["id"] for t in created]
    done = await wait_all_finished(services[0], ids, timeout=240)

    assert Counter(t["status"] for t in done) == {"succeeded": 200}
    made = await simulator.trainings()
    assert len(made) == 200
    assert sorted(t["replicate_id"] for t in done) == sorted(t["id"] for t in made)
    versions = {t["version"]["id"] for t in done}
    assert len(versions) == 200
