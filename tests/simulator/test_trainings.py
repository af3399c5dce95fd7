"""Trainings: create, read, list and cancel, with Replicate's answers."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
    SDXL_TRAINER,
)

from ..support.simulator import Simulator
from .calls import (
    FLUX_TRAININGS,
    IMAGES,
    PROBLEM_JSON,
    create_model,
    create_training,
    get_json,
    wait_for_status,
)

TRAINING_FIELDS = [
    "id",
    "model",
    "version",
    "input",
    "logs",
    "error",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "urls",
    "metrics",
    "output",
    "source",
]
INVALID_VERSION = {
    "title": "Invalid version or not permitted",
    "detail": (
        "The specified version does not exist (or perhaps you don't have "
        "permission to use it?)"
    ),
    "status": 422,
}


async def test_create_training_answers_201_with_a_starting_training(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    response = await api.post(
        FLUX_TRAININGS, json={"destination": destination, "input": IMAGES}
    )

    assert response.status == 201
    training = await response.json()
    assert list(training) == TRAINING_FIELDS
    assert training["model"] == FLUX_DEV_LORA_TRAINER
    assert training["version"] == FLUX_DEV_LORA_TRAINER_VERSION
    assert training["input"] == IMAGES
    assert (training["logs"], training["error"], training["status"]) == (
        "",
        None,
        "starting",
    )
    assert (training["started_at"], training["completed_at"]) == (None, None)
    assert (training["metrics"], training["output"]) == ({}, None)
    assert training["source"] == "api"
    get_url = f"{simulator.url}/v1/trainings/{training['id']}"
    assert training["urls"]["get"] == get_url
    assert training["urls"]["cancel"] == f"{get_url}/cancel"
    assert training["urls"]["web"].startswith("https://replicate.com/")


async def test_create_training_applies_the_trainers_defaults_to_the_run(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    training = await create_training(api, destination, input={**IMAGES, "steps": 3000})

    recorded = await simulator.training(training["id"])

    assert recorded["input"] == {**IMAGES, "steps": 3000}
    effective = recorded["effective_input"]
    assert effective["steps"] == 3000
    assert effective["lora_rank"] == 16
    assert effective["autocaption"] is True
    assert effective["trigger_word"] == "TOK"


@pytest.mark.parametrize(
    ("input", "field", "kind"),
    [
        ({}, "input", "required"),
        ({**IMAGES, "steps": "many"}, "input.steps", "invalid_type"),
        ({**IMAGES, "steps": 1.5}, "input.steps", "invalid_type"),
        ({**IMAGES, "steps": True}, "input.steps", "invalid_type"),
        ({**IMAGES, "steps": 2}, "input.steps", "number_gte"),
        ({**IMAGES, "steps": 6001}, "input.steps", "number_lte"),
        ({**IMAGES, "learning_rate": "fast"}, "input.learning_rate", "invalid_type"),
        ({**IMAGES, "autocaption": "yes"}, "input.autocaption", "invalid_type"),
        ({**IMAGES, "batch_size": 3}, "input.batch_size", "enum"),
        ({"input_images": "faces.zip"}, "input.input_images", "format"),
    ],
)
async def test_create_training_with_bad_input_is_a_422_naming_the_field(
    api: aiohttp.ClientSession,
    destination: str,
    input: dict[str, Any],
    field: str,
    kind: str,
) -> None:
    response = await api.post(
        FLUX_TRAININGS, json={"destination": destination, "input": input}
    )

    assert response.status == 422
    assert response.content_type == PROBLEM_JSON
    problem = await response.json()
    assert problem["title"] == "Input validation failed"
    assert [(f["field"], f["type"]) for f in problem["invalid_fields"]] == [
        (field, kind)
    ]
    assert field in problem["detail"]


async def test_create_training_accepts_a_whole_float_for_an_integer(
    api: aiohttp.ClientSession, destination: str
) -> None:
    response = await api.post(
        FLUX_TRAININGS,
        json={"destination": destination, "input": {**IMAGES, "steps": 1200.0}},
    )

    assert response.status == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"destination": None}, ""),
        ({"input": None}, ""),
        ({"destination": "faces"}, "destination"),
        ({"input": ["x"]}, "input"),
        ({"webhook": "ftp://example.com/hook"}, "webhook"),
        ({"webhook": "/relative/hook"}, "webhook"),
        ({"webhook_events_filter": ["start", "finished"]}, "webhook_events_filter.1"),
        ({"webhook_events_filter": "start"}, "webhook_events_filter"),
        ({"metadata": {"job": 1}}, ""),
    ],
)
async def test_create_training_with_a_bad_body_field_is_a_422(
    api: aiohttp.ClientSession, destination: str, change: dict[str, Any], field: str
) -> None:
    body = {"destination": destination, "input": IMAGES, **change}
    body = {k: v for k, v in body.items() if v is not None}

    response = await api.post(FLUX_TRAININGS, json=body)

    assert response.status == 422
    fields = [f["field"] for f in (await response.json())["invalid_fields"]]
    assert fields == [field]


@pytest.mark.parametrize(
    "webhook", ["http://127.0.0.1:9/hook", "https://example.com/hook?job=1"]
)
async def test_create_training_accepts_http_and_https_webhooks(
    api: aiohttp.ClientSession, destination: str, webhook: str
) -> None:
    response = await api.post(
        FLUX_TRAININGS,
        json={
            "destination": destination,
            "input": IMAGES,
            "webhook": webhook,
            "webhook_events_filter": ["completed"],
        },
    )

    assert response.status == 201


@pytest.mark.parametrize("destination", ["local/missing", FLUX_DEV_LORA_TRAINER])
async def test_create_training_into_a_missing_destination_is_replicates_404(
    api: aiohttp.ClientSession, destination: str
) -> None:
    response = await api.post(
        FLUX_TRAININGS, json={"destination": destination, "input": IMAGES}
    )

    assert response.status == 404
    assert await response.json() == {
        "detail": "The specified training destination does not exist",
        "status": 404,
    }


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/models/{FLUX_DEV_LORA_TRAINER}/versions/{'0' * 64}/trainings",
        f"/v1/models/ostris/no-trainer/versions/{FLUX_DEV_LORA_TRAINER_VERSION}"
        "/trainings",
        f"/v1/models/{SDXL_TRAINER}/versions/{FLUX_DEV_LORA_TRAINER_VERSION}/trainings",
    ],
    ids=["unknown-version", "unknown-model", "other-trainers-version"],
)
async def test_create_training_of_an_unknown_trainer_is_replicates_422(
    api: aiohttp.ClientSession, destination: str, path: str
) -> None:
    response = await api.post(path, json={"destination": destination, "input": IMAGES})

    assert response.status == 422
    assert await response.json() == INVALID_VERSION


async def test_create_training_from_a_version_that_is_no_trainer_is_a_422(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    await create_model(api, "plain")
    version = await simulator.push_version("local", "plain")
    path = f"/v1/models/local/plain/versions/{version['id']}/trainings"

    response = await api.post(path, json={"destination": destination, "input": {}})

    assert response.status == 422
    assert await response.json() == INVALID_VERSION


async def test_create_training_from_another_version_of_a_trainer_is_a_422(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    owner, name = FLUX_DEV_LORA_TRAINER.split("/")
    pushed = await simulator.push_version(owner, name)
    path = f"/v1/models/{FLUX_DEV_LORA_TRAINER}/versions/{pushed['id']}/trainings"

    response = await api.post(path, json={"destination": destination, "input": IMAGES})

    assert response.status == 422
    assert await response.json() == INVALID_VERSION


async def test_get_training_answers_it_without_a_destination(
    api: aiohttp.ClientSession, destination: str
) -> None:
    created = await create_training(api, destination)

    training = await get_json(api, f"/v1/trainings/{created['id']}")

    assert list(training) == TRAINING_FIELDS
    assert training["id"] == created["id"]
    assert "destination" not in training


async def test_get_unknown_training_is_a_404(api: aiohttp.ClientSession) -> None:
    response = await api.get("/v1/trainings/nosuchtraining")

    assert response.status == 404
    assert response.content_type == PROBLEM_JSON


async def test_list_trainings_is_newest_first_and_includes_web_ones(
    simulator: Simulator, api: aiohttp.ClientSession, destination: str
) -> None:
    first = await create_training(api, destination)
    web = await simulator.create_web_training(
        FLUX_DEV_LORA_TRAINER, destination, IMAGES
    )
    last = await create_training(api, destination)

    page = await get_json(api, "/v1/trainings")

    assert [t["id"] for t in page["results"]] == [last["id"], web["id"], first["id"]]
    assert [t["source"] for t in page["results"]] == ["api", "web", "api"]
    assert page["next"] is None
    assert page["previous"] is None


async def test_cancel_training_answers_200_with_it_canceled(
    api: aiohttp.ClientSession, destination: str
) -> None:
    created = await create_training(api, destination)

    response = await api.post(f"/v1/trainings/{created['id']}/cancel")

    assert response.status == 200
    training = await response.json()
    assert training["status"] == "canceled"
    assert training["completed_at"] is not None
    assert training["output"] is None
    assert "total_time" in training["metrics"]
    later = await get_json(api, f"/v1/trainings/{created['id']}")
    assert later["status"] == "canceled"


async def test_cancel_finished_training_answers_it_unchanged(
    api: aiohttp.ClientSession, destination: str
) -> None:
    created = await create_training(api, destination)
    finished = await wait_for_status(api, created["id"])

    response = await api.post(f"/v1/trainings/{created['id']}/cancel")

    assert response.status == 200
    assert await response.json() == finished
    assert finished["status"] == "succeeded"


async def test_cancel_unknown_training_is_a_404(api: aiohttp.ClientSession) -> None:
    response = await api.post("/v1/trainings/nosuchtraining/cancel")

    assert response.status == 404
