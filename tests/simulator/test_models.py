"""Models: create, read, list, update, delete, with Replicate's rules."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from service.simulator.state import MAX_MODELS_PER_ACCOUNT
from service.simulator.trainers import FLUX_DEV_LORA_TRAINER

from ..support.simulator import Simulator
from .calls import PROBLEM_JSON, create_model, get_json, walk

VALID = {"owner": "local", "name": "faces", "visibility": "private", "hardware": "cpu"}
MODEL_FIELDS = {
    "url",
    "owner",
    "name",
    "description",
    "visibility",
    "github_url",
    "paper_url",
    "license_url",
    "run_count",
    "cover_image_url",
    "default_example",
    "latest_version",
    "is_official",
}


async def test_create_model_answers_201_with_a_new_model(
    api: aiohttp.ClientSession,
) -> None:
    body = {**VALID, "description": "Our faces", "github_url": "https://github.com/a/b"}

    response = await api.post("/v1/models", json=body)

    assert response.status == 201
    model = await response.json()
    assert set(model) == MODEL_FIELDS
    assert model["url"] == "https://replicate.com/local/faces"
    assert (model["owner"], model["name"], model["visibility"]) == (
        "local",
        "faces",
        "private",
    )
    assert model["description"] == "Our faces"
    assert model["github_url"] == "https://github.com/a/b"
    assert model["run_count"] == 0
    assert model["latest_version"] is None


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"name": None}, "", "required"),
        ({"hardware": None}, "", "required"),
        ({"name": "Faces"}, "name", "pattern"),
        ({"name": "my/faces"}, "name", "pattern"),
        ({"name": "a" * 101}, "name", "pattern"),
        ({"visibility": "secret"}, "visibility", "enum"),
        ({"hardware": "gpu-tpu"}, "hardware", "enum"),
        ({"owner": 7}, "owner", "invalid_type"),
        ({"github_url": "not a url"}, "github_url", "format"),
        ({"colour": "blue"}, "", "additional_property_not_allowed"),
    ],
)
async def test_create_model_with_a_bad_field_is_a_422_naming_it(
    api: aiohttp.ClientSession, change: dict[str, Any], field: str, kind: str
) -> None:
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}

    response = await api.post("/v1/models", json=body)

    assert response.status == 422
    assert response.content_type == PROBLEM_JSON
    problem = await response.json()
    assert problem["title"] == "Input validation failed"
    assert {"type": kind, "field": field} == {
        k: problem["invalid_fields"][0][k] for k in ("type", "field")
    }


@pytest.mark.parametrize("name", ["a", "faces-v2", "my_model", "sd.xl", "0day"])
async def test_create_model_accepts_replicates_name_alphabet(
    api: aiohttp.ClientSession, name: str
) -> None:
    response = await api.post("/v1/models", json={**VALID, "name": name})

    assert response.status == 201


async def test_create_model_for_another_owner_is_forbidden(
    api: aiohttp.ClientSession,
) -> None:
    response = await api.post("/v1/models", json={**VALID, "owner": "someone-else"})

    assert response.status == 403
    assert response.content_type == PROBLEM_JSON


async def test_create_model_with_a_taken_name_is_a_409(
    api: aiohttp.ClientSession,
) -> None:
    await create_model(api, "faces")

    response = await api.post("/v1/models", json=VALID)

    assert response.status == 409
    assert response.content_type == PROBLEM_JSON


async def test_create_model_past_the_account_limit_is_refused() -> None:
    generous = {"rate_limit": 1_000_000, "create_rate_limit": 1_000_000}
    async with Simulator(**generous) as simulator, simulator.api_session() as api:
        for index in range(MAX_MODELS_PER_ACCOUNT):
            await create_model(api, f"m{index}")

        response = await api.post("/v1/models", json={**VALID, "name": "one-more"})

        assert response.status == 403
        assert "1,000" in (await response.json())["detail"]


async def test_get_model_answers_the_model(api: aiohttp.ClientSession) -> None:
    created = await create_model(api, "faces")

    assert await get_json(api, "/v1/models/local/faces") == created


async def test_get_missing_model_is_a_404(api: aiohttp.ClientSession) -> None:
    response = await api.get("/v1/models/local/missing")

    assert response.status == 404
    assert await response.json() == {
        "detail": "The requested resource could not be found.",
        "status": 404,
    }


async def test_list_models_holds_public_models_newest_first(
    api: aiohttp.ClientSession,
) -> None:
    await create_model(api, "first", visibility="public")
    await create_model(api, "second", visibility="public")

    names = [f"{m['owner']}/{m['name']}" for m in await walk(api, "/v1/models")]

    assert names[:2] == ["local/second", "local/first"]
    assert FLUX_DEV_LORA_TRAINER in names


async def test_list_models_leaves_private_models_out_as_replicate_does(
    api: aiohttp.ClientSession,
) -> None:
    await create_model(api, "hidden", visibility="private")

    names = [m["name"] for m in await walk(api, "/v1/models")]

    assert "hidden" not in names
    assert (await get_json(api, "/v1/models/local/hidden"))["name"] == "hidden"


async def test_update_model_changes_the_fields_replicate_allows(
    api: aiohttp.ClientSession,
) -> None:
    await create_model(api, "faces")
    changes = {
        "description": "Faces, v2",
        "readme": "# Faces",
        "github_url": "https://github.com/acme/faces",
        "paper_url": "https://arxiv.org/abs/1",
        "weights_url": "https://huggingface.co/acme/faces",
        "license_url": None,
    }

    response = await api.patch("/v1/models/local/faces", json=changes)

    assert response.status == 200
    model = await response.json()
    assert model["description"] == "Faces, v2"
    assert model["github_url"] == "https://github.com/acme/faces"
    assert model["paper_url"] == "https://arxiv.org/abs/1"
    assert await get_json(api, "/v1/models/local/faces") == model


@pytest.mark.parametrize(
    "changes", [{"visibility": "public"}, {"name": "other"}, {"description": 5}]
)
async def test_update_model_refuses_other_fields_and_types(
    api: aiohttp.ClientSession, changes: dict[str, Any]
) -> None:
    await create_model(api, "faces")

    response = await api.patch("/v1/models/local/faces", json=changes)

    assert response.status == 422


async def test_update_another_owners_model_is_forbidden(
    api: aiohttp.ClientSession,
) -> None:
    response = await api.patch(
        f"/v1/models/{FLUX_DEV_LORA_TRAINER}", json={"description": "mine now"}
    )

    assert response.status == 403


async def test_delete_private_model_without_versions_answers_204(
    api: aiohttp.ClientSession,
) -> None:
    await create_model(api, "faces")

    response = await api.delete("/v1/models/local/faces")

    assert response.status == 204
    assert (await api.get("/v1/models/local/faces")).status == 404


async def test_delete_public_model_is_refused(api: aiohttp.ClientSession) -> None:
    await create_model(api, "faces", visibility="public")

    response = await api.delete("/v1/models/local/faces")

    assert response.status == 409
    assert "private" in (await response.json())["detail"]


async def test_delete_model_with_versions_is_refused(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    await create_model(api, "faces")
    await simulator.push_version("local", "faces")

    response = await api.delete("/v1/models/local/faces")

    assert response.status == 409
    assert "versions" in (await response.json())["detail"]


async def test_delete_another_owners_model_is_forbidden(
    api: aiohttp.ClientSession,
) -> None:
    response = await api.delete(f"/v1/models/{FLUX_DEV_LORA_TRAINER}")

    assert response.status == 403
    assert (await api.get(f"/v1/models/{FLUX_DEV_LORA_TRAINER}")).status == 200
