"""Input PostgreSQL cannot store, or of the wrong type, is a 4xx, never a 500."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient

from ..support.factories import TRAINER


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": {"prompt": "a\u0000b"}}, "input.prompt"),
        ({"input": {"bad\u0000key": 1}}, "input"),
        ({"input": {"text": "\ud800"}}, "input.text"),
        ({"metadata": {"k": "\udfff"}}, "metadata.k"),
        ({"input": {"list": ["ok", "n\u0000"]}}, "input.list.1"),
    ],
)
async def test_unstorable_characters_in_a_body_are_a_422_naming_the_field(
    client: TestClient, body: dict, field: str
) -> None:
    request = {"destination": "acme/faces", "trainer": TRAINER, "input": {}, **body}

    response = await client.post(
        "/v1/trainings",
        data=json.dumps(request),
        headers={"Content-Type": "application/json"},
    )

    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == field


@pytest.mark.parametrize(
    "path",
    [
        "/v1/trainings/trn_%00",
        "/v1/destinations/acme/fa%00ces",
        "/v1/trainings?destination=a%00/b",
        "/v1/destinations?owner=%ff%fe",
    ],
)
async def test_unstorable_characters_in_the_url_are_a_400(
    client: TestClient, path: str
) -> None:
    response = await client.get(path)

    assert response.status == 400
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/notifications/redeliver", {"caller": "x", "since": 0}),
        (
            "/v1/trainings",
            {
                "destination": "a/b",
                "trainer": TRAINER,
                "input": {},
                "metadata": {"k": 1},
            },
        ),
    ],
)
async def test_values_of_the_wrong_json_type_are_refused_not_coerced(
    client: TestClient, path: str, body: dict
) -> None:
    response = await client.post(path, json=body)

    assert response.status == 422


@pytest.mark.parametrize("query", ["after=-1", "after=x", "after=1e3"])
async def test_bad_event_positions_are_a_400_with_or_without_a_stream(
    client: TestClient, query: str
) -> None:
    created = await client.post(
        "/v1/trainings", json={"destination": "a/b", "trainer": TRAINER, "input": {}}
    )
    training_id = (await created.json())["id"]

    plain = await client.get(f"/v1/trainings/{training_id}/events?{query}")
    streamed = await client.get(
        f"/v1/trainings/{training_id}/events?{query}",
        headers={"Accept": "text/event-stream"},
    )

    assert (plain.status, streamed.status) == (400, 400)


async def test_empty_cursor_means_the_first_page(client: TestClient) -> None:
    response = await client.get("/v1/destinations?cursor=")

    assert response.status == 200


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_a_non_json_number_is_a_400_not_stored_as_null(
    client: TestClient, constant: str
) -> None:
    # Python's JSON reader takes these; JSON does not, and quietly storing null
    # for the caller's NaN would change what it asked for.
    raw = (
        f'{{"destination": "acme/faces", "trainer": "{TRAINER}", '
        f'"input": {{"learning_rate": {constant}}}}}'
    )

    response = await client.post(
        "/v1/trainings", data=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status == 400
    assert response.content_type == "application/problem+json"
    assert "JSON" in (await response.json())["detail"]
