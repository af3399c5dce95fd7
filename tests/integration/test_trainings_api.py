"""/v1/trainings over real HTTP, against the real database (no Replicate needed)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from ..support.factories import INPUT, TRAINER, replicate_training
from ..support.webhooks import signed_webhook
from .conftest import WEBHOOK_SECRET


def request_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "destination": "acme/faces",
        "trainer": TRAINER,
        "input": INPUT,
        "metadata": {"team": "vision", "run": "1"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def submit(client: TestClient, **changes: Any) -> dict[str, Any]:
    response = await client.post("/v1/trainings", json=request_body(**changes))
    assert response.status == 202, await response.text()
    return await response.json()


async def test_submitted_training_is_queued_durable_and_located(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    response = await client.post("/v1/trainings", json=request_body())

    assert response.status == 202
    body = await response.json()
    assert body["status"] == "queued"
    assert body["destination"] == "acme/faces"
    assert body["trainer"] == TRAINER
    assert body["metadata"] == {"team": "vision", "run": "1"}
    assert body["id"].startswith("trn_")
    assert response.headers["Location"].endswith(f"/v1/trainings/{body['id']}")
    stored = await pool.fetchrow(
        "SELECT status, input FROM trainings WHERE id = $1", body["id"]
    )
    assert stored["status"] == "queued"
    assert stored["input"] == INPUT
    assert await pool.fetchval("SELECT count(*) FROM destinations") == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"destination": None}, "destination"),
        ({"destination": "Acme/Faces"}, "destination"),
        ({"destination": "acme"}, "destination"),
        ({"trainer": "ostris/flux-dev-lora-trainer"}, "trainer"),
        ({"trainer": "ostris/flux:abc"}, "trainer"),
        ({"input": None}, "input"),
        ({"input": ["not", "an", "object"]}, "input"),
        ({"input": {"blob": "x" * 300_000}}, "input"),
        ({"metadata": {"bad key": "v"}}, "metadata.bad key.[key]"),
        ({"metadata": {"k": 5}}, "metadata.k"),
        ({"metadata": {f"k{i}": "v" for i in range(33)}}, "metadata"),
        ({"callback_url": "ftp://example.com/hook"}, "callback_url"),
        ({"callback_url": "/relative"}, "callback_url"),
        (
            {"destination_settings": {"visibility": "secret"}},
            "destination_settings.visibility",
        ),
        ({"destination_settings": {"gpu": "h100"}}, "destination_settings.gpu"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_invalid_request_is_a_422_naming_the_field(
    client: TestClient, pool: asyncpg.Pool, changes: dict, field: str
) -> None:
    response = await client.post("/v1/trainings", json=request_body(**changes))

    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert field in [error["field"] for error in problem["errors"]]
    assert problem["detail"].startswith(problem["errors"][0]["field"])
    assert await pool.fetchval("SELECT count(*) FROM trainings") == 0


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff", b"null"])
async def test_body_that_is_not_a_json_object_is_refused(
    client: TestClient, raw: bytes
) -> None:
    response = await client.post(
        "/v1/trainings", data=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status in (400, 422)
    assert response.content_type == "application/problem+json"


async def test_body_over_a_megabyte_is_refused(client: TestClient) -> None:
    response = await client.post(
        "/v1/trainings",
        data=io.BytesIO(b"{" + b" " * (1024 * 1024 + 1) + b"}"),
        headers={"Content-Type": "application/json"},
    )

    assert response.status == 413


async def test_same_idempotency_key_and_body_returns_the_first_training(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/v1/trainings", json=request_body(), headers=headers)
    # Same meaning, other key order: still the same request.
    reordered = dict(reversed(list(request_body().items())))
    second = await client.post("/v1/trainings", json=reordered, headers=headers)

    assert first.status == second.status == 202
    assert (await first.json())["id"] == (await second.json())["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await pool.fetchval("SELECT count(*) FROM trainings") == 1


async def test_same_idempotency_key_with_another_body_is_refused(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    await client.post("/v1/trainings", json=request_body(), headers=headers)

    response = await client.post(
        "/v1/trainings", json=request_body(destination="acme/other"), headers=headers
    )

    assert response.status == 422
    assert "Idempotency-Key" in (await response.json())["detail"]
    assert await pool.fetchval("SELECT count(*) FROM trainings") == 1


async def test_concurrent_requests_with_one_idempotency_key_make_one_training(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    headers = {"Idempotency-Key": "burst"}

    responses = await asyncio.gather(
        *(
            client.post("/v1/trainings", json=request_body(), headers=headers)
            for _ in range(8)
        )
    )

    ids = {(await r.json())["id"] for r in responses}
    assert [r.status for r in responses] == [202] * 8
    assert len(ids) == 1
    assert await pool.fetchval("SELECT count(*) FROM trainings") == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\tkey"])
async def test_malformed_idempotency_key_is_refused(
    client: TestClient, key: str
) -> None:
    response = await client.post(
        "/v1/trainings", json=request_body(), headers={"Idempotency-Key": key}
    )

    assert response.status == 400


async def test_training_can_be_read_back(client: TestClient) -> None:
    created = await submit(client)

    response = await client.get(f"/v1/trainings/{created['id']}")

    assert response.status == 200
    assert await response.json() == created


async def test_unknown_training_is_a_404_problem(client: TestClient) -> None:
    response = await client.get("/v1/trainings/trn_01JF0000000000000000000000")

    assert response.status == 404
    assert response.content_type == "application/problem+json"


async def test_list_walked_to_the_end_is_newest_first_without_gaps(
    client: TestClient,
) -> None:
    made = [(await submit(client))["id"] for _ in range(7)]

    seen: list[str] = []
    url: str | None = "/v1/trainings?limit=3"
    while url is not None:
        page = await (await client.get(url)).json()
        seen += [t["id"] for t in page["results"]]
        url = page["next"]
        if url is not None:
            assert url.startswith("http://127.0.0.1")
            url = url.split(str(client.make_url("")).rstrip("/"), 1)[1]

    assert seen == list(reversed(made))


async def test_list_filters_by_status_destination_and_metadata(
    client: TestClient,
) -> None:
    a = await submit(client, destination="acme/faces", metadata={"team": "vision"})
    b = await submit(client, destination="acme/voices", metadata={"team": "audio"})
    c = await submit(client, destination="acme/faces", metadata={"team": "audio"})
    await client.post(f"/v1/trainings/{c['id']}/cancel")

    async def ids(query: str) -> list[str]:
        page = await (await client.get(f"/v1/trainings?{query}")).json()
        return [t["id"] for t in page["results"]]

    assert await ids("destination=acme/faces") == [c["id"], a["id"]]
    assert await ids("metadata.team=audio") == [c["id"], b["id"]]
    assert await ids("status=canceled") == [c["id"]]
    assert await ids("status=queued,canceled&destination=acme/faces") == [
        c["id"],
        a["id"],
    ]
    assert await ids("metadata.team=audio&status=queued") == [b["id"]]


@pytest.mark.parametrize(
    "query",
    [
        "status=lost",
        "destination=nope",
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=%%%",
        "cursor=ADBz",  # a NUL byte, once decoded
        "cursor=dHJuX25vdC1hbi1pZA",  # "trn_not-an-id"
    ],
)
async def test_bad_list_parameters_are_a_400_problem(
    client: TestClient, query: str
) -> None:
    response = await client.get(f"/v1/trainings?{query}")

    assert response.status == 400
    assert response.content_type == "application/problem+json"


async def test_events_list_every_applied_report_in_order(client: TestClient) -> None:
    created = await submit(client)
    for status in ("starting", "processing", "succeeded"):
        body, headers = signed_webhook(
            WEBHOOK_SECRET, replicate_training("r8a", status).raw()
        )
        await client.post(
            f"/webhooks/replicate?training_id={created['id']}",
            data=body,
            headers=headers,
        )

    events = await (await client.get(f"/v1/trainings/{created['id']}/events")).json()
    training = await (await client.get(f"/v1/trainings/{created['id']}")).json()

    assert [e["status"] for e in events["results"]] == [
        "starting",
        "processing",
        "succeeded",
    ]
    assert all(e["source"] == "webhook" and e["applied"] for e in events["results"])
    assert training["status"] == "succeeded"
    assert training["version"] == {"id": "f" * 64, "destination": "acme/faces"}


async def test_cancelling_a_queued_training_cancels_it_here(client: TestClient) -> None:
    created = await submit(client)

    response = await client.post(f"/v1/trainings/{created['id']}/cancel")

    assert response.status == 200
    body = await response.json()
    assert body["status"] == "canceled"
    assert body["completed_at"] is not None


async def test_cancelling_a_finished_training_is_a_409(client: TestClient) -> None:
    created = await submit(client)
    await client.post(f"/v1/trainings/{created['id']}/cancel")

    response = await client.post(f"/v1/trainings/{created['id']}/cancel")

    assert response.status == 409
    assert "already canceled" in (await response.json())["detail"]


async def test_cancelling_an_unknown_training_is_a_404(client: TestClient) -> None:
    response = await client.post("/v1/trainings/trn_01JF0000000000000000000000/cancel")

    assert response.status == 404
