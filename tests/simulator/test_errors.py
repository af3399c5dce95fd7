"""Errors are problem+json in Replicate's words; bad input is never a 5xx."""

from __future__ import annotations

import io

import aiohttp
import pytest

from .calls import FLUX_TRAININGS, PROBLEM_JSON

NOT_FOUND = {"detail": "The requested resource could not be found.", "status": 404}


@pytest.mark.parametrize(
    "path",
    ["/", "/v1/nothing", "/v1/models/local", "/v1/trainings/nope/extra", "/v2/models"],
)
async def test_unknown_route_is_replicates_404_problem(
    api: aiohttp.ClientSession, path: str
) -> None:
    response = await api.get(path)

    assert response.status == 404
    assert response.content_type == PROBLEM_JSON
    assert await response.json() == NOT_FOUND


async def test_wrong_method_is_a_405_problem_naming_the_allowed_ones(
    api: aiohttp.ClientSession,
) -> None:
    response = await api.put("/v1/trainings")

    assert response.status == 405
    assert response.content_type == PROBLEM_JSON
    assert await response.json() == {
        "detail": 'Method "PUT" not allowed.',
        "status": 405,
    }
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b'{"a": NaN}', b"[" * 100_000, b"\xff\xfe\x00"],
    ids=["empty", "truncated", "text", "nan", "deep", "binary"],
)
@pytest.mark.parametrize("path", ["/v1/models", FLUX_TRAININGS])
async def test_unreadable_body_is_a_400_problem(
    api: aiohttp.ClientSession, path: str, body: bytes
) -> None:
    response = await api.post(
        path, data=body, headers={"Content-Type": "application/json"}
    )

    assert response.status == 400
    assert response.content_type == PROBLEM_JSON
    assert await response.json() == {
        "detail": "The request body is not valid JSON.",
        "status": 400,
    }


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"3", b"null"])
async def test_body_that_is_not_an_object_is_a_422_problem(
    api: aiohttp.ClientSession, body: bytes
) -> None:
    response = await api.post(
        "/v1/models", data=body, headers={"Content-Type": "application/json"}
    )

    assert response.status == 422
    problem = await response.json()
    assert problem["title"] == "Input validation failed"
    assert problem["invalid_fields"][0]["type"] == "invalid_type"


async def test_oversized_body_is_a_413_problem(api: aiohttp.ClientSession) -> None:
    response = await api.post("/v1/models", data=io.BytesIO(b"x" * 2 * 1024 * 1024))

    assert response.status == 413
    assert response.content_type == PROBLEM_JSON
    assert (await response.json())["status"] == 413
