"""Versions: listed newest first, read one, delete with Replicate's refusals."""

from __future__ import annotations

import re

import aiohttp

from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
)

from ..support.simulator import Simulator
from .calls import create_model, get_json, walk

HEX64 = re.compile(r"^[0-9a-f]{64}$")


async def test_versions_are_listed_newest_first(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await create_model(api, "faces")
    first = await simulator.push_version("local", "faces")
    second = await simulator.push_version("local", "faces")

    versions = await walk(api, "/v1/models/local/faces/versions")

    assert [v["id"] for v in versions] == [second["id"], first["id"]]


async def test_version_has_the_fields_clients_parse(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await create_model(api, "faces")
    pushed = await simulator.push_version("local", "faces")

    version = await get_json(api, f"/v1/models/local/faces/versions/{pushed['id']}")

    assert set(version) == {"id", "created_at", "cog_version", "openapi_schema"}
    assert HEX64.match(version["id"])
    assert isinstance(version["cog_version"], str)
    assert "Input" in version["openapi_schema"]["components"]["schemas"]
    assert version["created_at"].endswith("Z")


async def test_get_unknown_version_is_a_404(api: aiohttp.ClientSession) -> None:
    await create_model(api, "faces")

    response = await api.get(f"/v1/models/local/faces/versions/{'0' * 64}")

    assert response.status == 404


async def test_delete_version_answers_202_with_an_empty_body(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await create_model(api, "faces")
    older = await simulator.push_version("local", "faces")
    newer = await simulator.push_version("local", "faces")

    response = await api.delete(f"/v1/models/local/faces/versions/{newer['id']}")

    assert response.status == 202
    assert await response.read() == b""
    model = await get_json(api, "/v1/models/local/faces")
    assert model["latest_version"]["id"] == older["id"]


async def test_delete_version_of_a_public_model_is_a_409(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await create_model(api, "faces", visibility="public")
    version = await simulator.push_version("local", "faces")

    response = await api.delete(f"/v1/models/local/faces/versions/{version['id']}")

    assert response.status == 409
    assert "public" in (await response.json())["detail"]


async def test_delete_version_of_another_owners_model_is_a_409(
    api: aiohttp.ClientSession,
) -> None:
    path = (
        f"/v1/models/{FLUX_DEV_LORA_TRAINER}/versions/{FLUX_DEV_LORA_TRAINER_VERSION}"
    )

    response = await api.delete(path)

    assert response.status == 409
    assert "another account" in (await response.json())["detail"]
    assert (await api.get(path)).status == 200


async def test_delete_trainer_version_is_a_409_even_for_its_owner() -> None:
    async with (
        Simulator(account="ostris") as simulator,
        simulator.api_session() as api,
    ):
        path = (
            f"/v1/models/{FLUX_DEV_LORA_TRAINER}/versions/"
            f"{FLUX_DEV_LORA_TRAINER_VERSION}"
        )

        response = await api.delete(path)

        assert response.status == 409
        assert "base of a training" in (await response.json())["detail"]
