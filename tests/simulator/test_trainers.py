"""The trainers served from the start, with their fixed versions and inputs."""

from __future__ import annotations

import re

import aiohttp
import pytest

from service.simulator.trainers import (
    FAST_FLUX_TRAINER,
    FAST_FLUX_TRAINER_VERSION,
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
    SDXL_TRAINER,
    SDXL_TRAINER_VERSION,
)

from .calls import get_json

TRAINERS = [
    (FLUX_DEV_LORA_TRAINER, FLUX_DEV_LORA_TRAINER_VERSION),
    (FAST_FLUX_TRAINER, FAST_FLUX_TRAINER_VERSION),
    (SDXL_TRAINER, SDXL_TRAINER_VERSION),
]


@pytest.mark.parametrize(("trainer", "version_id"), TRAINERS)
async def test_trainer_is_a_public_model_of_another_account_with_its_version(
    api: aiohttp.ClientSession, trainer: str, version_id: str
) -> None:
    model = await get_json(api, f"/v1/models/{trainer}")

    assert re.fullmatch(r"[0-9a-f]{64}", version_id)
    assert model["visibility"] == "public"
    assert model["owner"] != "local"
    assert model["latest_version"]["id"] == version_id
    version = await get_json(api, f"/v1/models/{trainer}/versions/{version_id}")
    assert version == model["latest_version"]


@pytest.mark.parametrize(("trainer", "version_id"), TRAINERS)
async def test_trainer_schema_declares_typed_inputs_with_required_and_defaults(
    api: aiohttp.ClientSession, trainer: str, version_id: str
) -> None:
    version = await get_json(api, f"/v1/models/{trainer}/versions/{version_id}")

    schemas = version["openapi_schema"]["components"]["schemas"]
    inputs = schemas["Input"]
    assert schemas["TrainingInput"] == inputs
    assert inputs["required"] == ["input_images"]
    images = inputs["properties"]["input_images"]
    assert (images["type"], images["format"]) == ("string", "uri")
    assert any("default" in spec for spec in inputs["properties"].values())


async def test_flux_trainer_inputs_match_the_real_trainers(
    api: aiohttp.ClientSession,
) -> None:
    path = (
        f"/v1/models/{FLUX_DEV_LORA_TRAINER}/versions/{FLUX_DEV_LORA_TRAINER_VERSION}"
    )

    version = await get_json(api, path)

    properties = version["openapi_schema"]["components"]["schemas"]["Input"][
        "properties"
    ]
    steps = properties["steps"]
    assert (steps["type"], steps["default"]) == ("integer", 1000)
    assert (steps["minimum"], steps["maximum"]) == (3, 6000)
    assert properties["lora_rank"]["type"] == "integer"
    assert properties["learning_rate"]["type"] == "number"
    assert properties["autocaption"] == {**properties["autocaption"], "default": True}
    assert properties["trigger_word"]["type"] == "string"
