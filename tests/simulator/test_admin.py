"""The admin API under /_sim/: faults, what happened, and work done "on the web"."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from service.simulator.faults import FaultSettings
from service.simulator.trainers import FLUX_DEV_LORA_TRAINER

from ..support.simulator import Simulator, WebhookReceiver, wait_until
from .calls import IMAGES, create_model, create_training, get_json, wait_for_status


@pytest.fixture
async def admin(simulator: Simulator) -> Any:
    async with aiohttp.ClientSession(base_url=simulator.url) as session:
        yield session


async def test_faults_start_switched_off(simulator: Simulator) -> None:
    faults = await simulator.faults()

    expected = FaultSettings().model_dump(exclude={"throttle_storm_seconds"})
    assert faults == {**expected, "throttle_storm_remaining_seconds": None}


async def test_faults_update_is_partial(simulator: Simulator) -> None:
    await simulator.set_faults(error_rate=0.25, latency_ms=10)

    faults = await simulator.set_faults(latency_ms=20)

    assert (faults["error_rate"], faults["latency_ms"]) == (0.25, 20)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"error_rate": "0.5"}, "error_rate"),
        ({"lost_create_rate": -0.1}, "lost_create_rate"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": 2.5}, "latency_ms"),
        ({"webhook_delay_ms": None}, "webhook_delay_ms"),
        ({"throttle_storm": "yes"}, "throttle_storm"),
        ({"throttle_storm_seconds": 0}, "throttle_storm_seconds"),
        ({"chaos": True}, "chaos"),
    ],
)
async def test_faults_update_with_a_bad_value_is_a_422_naming_it(
    simulator: Simulator, admin: aiohttp.ClientSession, body: Any, field: str
) -> None:
    before = await simulator.faults()

    response = await admin.patch("/_sim/faults", json=body)

    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert [f["field"] for f in problem["invalid_fields"]] == [field]
    assert await simulator.faults() == before


@pytest.mark.parametrize("body", [b"[]", b"nope"])
async def test_faults_update_with_a_body_that_is_no_object_is_refused(
    admin: aiohttp.ClientSession, body: bytes
) -> None:
    response = await admin.patch("/_sim/faults", data=body)

    assert response.status in (400, 422)
    assert response.content_type == "application/problem+json"


async def test_trainings_list_every_training_with_what_replicate_hides(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
) -> None:
    await create_model(api, "faces")
    await create_model(api, "pets")
    faces = await create_training(
        api,
        "local/faces",
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    pets = await create_training(api, "local/pets")
    await api.post(f"/v1/trainings/{pets['id']}/cancel")

    everything = await simulator.trainings()
    only_faces = await simulator.trainings(destination="local/faces")

    assert [t["id"] for t in everything] == [pets["id"], faces["id"]]
    [recorded] = only_faces
    assert recorded["destination"] == "local/faces"
    assert recorded["webhook"] == receiver.url
    assert recorded["webhook_events_filter"] == ["completed"]
    assert recorded["input"] == IMAGES
    assert recorded["source"] == "api"
    assert recorded["created_at"] == faces["created_at"]
    assert everything[0]["status"] == "canceled"


async def test_web_training_has_source_web_and_no_webhook(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    made = await simulator.create_web_training(
        FLUX_DEV_LORA_TRAINER, destination, IMAGES
    )

    training = await wait_for_status(api, made["id"])

    assert made["source"] == "web"
    assert made["webhook"] is None
    assert training["source"] == "web"
    assert training["status"] == "succeeded"
    assert training["urls"]["get"] == f"{simulator.url}/v1/trainings/{made['id']}"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "ostris/nothing", "destination": "local/faces", "input": {}}, 422),
        (
            {"model": FLUX_DEV_LORA_TRAINER, "destination": "local/x", "input": IMAGES},
            404,
        ),
        (
            {"model": FLUX_DEV_LORA_TRAINER, "destination": "local/faces", "input": {}},
            422,
        ),
        ({"model": FLUX_DEV_LORA_TRAINER, "input": IMAGES}, 422),
    ],
)
async def test_web_training_is_checked_like_an_api_one(
    admin: aiohttp.ClientSession, destination: str, body: Any, status: int
) -> None:
    response = await admin.post("/_sim/trainings", json=body)

    assert response.status == status


async def test_pushed_version_becomes_the_latest_with_its_schema(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    schema = {"components": {"schemas": {"Input": {"type": "object"}}}}

    pushed = await simulator.push_version(
        "local", "faces", cog_version="0.14.1", openapi_schema=schema
    )

    model = await get_json(api, f"/v1/models/{destination}")
    assert model["latest_version"] == pushed
    assert (pushed["cog_version"], pushed["openapi_schema"]) == ("0.14.1", schema)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/_sim/models/local/missing/versions", {}, 404),
        ("/_sim/models/local/faces/versions", {"cog_version": 1}, 422),
        ("/_sim/models/local/faces/versions", {"openapi_schema": []}, 422),
    ],
)
async def test_push_version_refuses_bad_requests(
    admin: aiohttp.ClientSession, destination: str, path: str, body: Any, status: int
) -> None:
    response = await admin.post(path, json=body)

    assert response.status == status


@pytest.mark.parametrize("status", ["failed", "canceled"])
async def test_finish_ends_a_training_with_the_status_asked(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str, status: str
) -> None:
    created = await create_training(api, destination)

    finished = await simulator.finish_training(created["id"], status)

    assert finished["status"] == status
    assert (await get_json(api, f"/v1/trainings/{created['id']}"))["status"] == status


@pytest.mark.parametrize(("status", "answer"), [("succeeded", 409), ("paused", 422)])
async def test_finish_refuses_a_finished_training_or_an_unknown_status(
    admin: aiohttp.ClientSession,
    api: aiohttp.ClientSession,
    destination: str,
    status: str,
    answer: int,
) -> None:
    created = await create_training(api, destination)
    await wait_for_status(api, created["id"])

    response = await admin.post(
        f"/_sim/trainings/{created['id']}/finish", json={"status": status}
    )

    assert response.status == answer


async def test_webhooks_list_every_attempt_filterable_by_training(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    receiver.answer_with(500)
    first = await create_training(
        api, destination, webhook=receiver.url, webhook_events_filter=["completed"]
    )
    await wait_until(lambda: _count(simulator.webhooks(first["id"]), 2))
    second = await create_training(
        api, destination, webhook=receiver.url, webhook_events_filter=["start"]
    )
    await wait_until(lambda: _count(simulator.webhooks(second["id"]), 1))

    attempts = await simulator.webhooks(first["id"])

    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 200)]
    assert set(attempts[0]) == {
        "training_id",
        "webhook_id",
        "event",
        "url",
        "attempt",
        "sent_at",
        "status_code",
        "error",
        "fault",
    }
    assert len(await simulator.webhooks()) == 3


async def test_stats_count_requests_by_endpoint_and_status(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await create_model(api, "faces")
    await api.get("/v1/models/local/faces")
    await api.get("/v1/models/local/missing")
    await api.get("/nowhere")

    stats = await simulator.stats()

    assert stats["requests"]["POST /v1/models"] == {"201": 1}
    assert stats["requests"]["GET /v1/models/{owner}/{name}"] == {"200": 1, "404": 1}
    assert stats["requests"]["GET (no route)"] == {"404": 1}
    assert stats["creations"] == {"models": 1}
    assert not any(
        endpoint.startswith(("GET /_sim", "POST /_sim"))
        for endpoint in stats["requests"]
    )


async def test_reset_forgets_the_work_but_keeps_trainers_and_faults(
    simulator: Simulator,
    api: aiohttp.ClientSession,
    receiver: WebhookReceiver,
    destination: str,
) -> None:
    await create_training(api, destination, webhook=receiver.url)
    await simulator.set_faults(latency_ms=5)

    await simulator.reset()

    assert (await api.get(f"/v1/models/{destination}")).status == 404
    assert (await get_json(api, "/v1/trainings"))["results"] == []
    assert await simulator.trainings() == []
    assert await simulator.webhooks() == []
    assert (await get_json(api, f"/v1/models/{FLUX_DEV_LORA_TRAINER}"))[
        "run_count"
    ] == 0
    assert (await simulator.faults())["latency_ms"] == 5
    assert (await simulator.stats())["creations"] == {}


async def test_health_answers_without_a_token(admin: aiohttp.ClientSession) -> None:
    response = await admin.get("/_sim/health")

    assert response.status == 200
    assert await response.json() == {"status": "ok", "account": "local"}


async def _count(entries: Any, count: int) -> bool:
    return len(await entries) >= count
