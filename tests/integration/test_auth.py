"""Caller authentication: bearer tokens, their scopes, and the open endpoints."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.store import tokens

from ..support.factories import TRAINER, replicate_training
from ..support.raw_http import raw_request
from ..support.webhooks import signed_webhook
from .conftest import WEBHOOK_SECRET, AppFactory

AUTH_ON = {"TUNEYARD_AUTH_REQUIRED": "true"}


@pytest.fixture
async def client(app_client: AppFactory, clean_database: str) -> TestClient:
    return await app_client(clean_database, **AUTH_ON)


async def token(pool: asyncpg.Pool, name: str, *owners: str) -> dict[str, str]:
    async with pool.acquire() as conn:
        made = await tokens.create(conn, name, list(owners))
    assert made is not None
    return {"Authorization": f"Bearer {made}"}


def training(destination: str = "acme/faces") -> dict:
    return {"destination": destination, "trainer": TRAINER, "input": {}}


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer ty_not_a_real_token", "Basic dXNlcjpwYXNz", "ty_raw"],
)
async def test_request_without_a_valid_token_is_a_401_problem(
    client: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.get("/v1/trainings", headers=headers)

    assert response.status == 401
    assert response.content_type == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/v1/trainings", "/readyz"])
async def test_token_that_is_not_ascii_is_a_401_not_a_crash(
    app_client: AppFactory, clean_database: str, path: str
) -> None:
    client = await app_client(
        clean_database, **AUTH_ON, TUNEYARD_OPS_TOKEN="ops-token-for-tests"
    )

    answer = await raw_request(
        client.server.port, "GET", path, [(b"Authorization", b"Bearer ty_\xff\xfe")]
    )

    assert answer.status == 401
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_training_records_the_callers_token_name(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    headers = await token(pool, "billing-service")

    response = await client.post("/v1/trainings", json=training(), headers=headers)

    assert response.status == 202
    assert (await response.json())["caller"] == "billing-service"
    assert await pool.fetchval("SELECT caller FROM trainings") == "billing-service"


async def test_idempotency_keys_belong_to_their_caller(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    one, other = await token(pool, "one"), await token(pool, "other")

    first = await client.post(
        "/v1/trainings", json=training(), headers={**one, "Idempotency-Key": "k"}
    )
    second = await client.post(
        "/v1/trainings", json=training(), headers={**other, "Idempotency-Key": "k"}
    )

    assert (await first.json())["id"] != (await second.json())["id"]


async def test_revoked_token_is_refused(client: TestClient, pool: asyncpg.Pool) -> None:
    headers = await token(pool, "leaving")
    async with pool.acquire() as conn:
        assert await tokens.revoke(conn, "leaving")

    response = await client.get("/v1/trainings", headers=headers)

    assert response.status == 401
    assert "unknown or revoked" in (await response.json())["detail"]


async def test_only_a_hash_of_the_token_is_stored(pool: asyncpg.Pool) -> None:
    headers = await token(pool, "hashed")
    raw = headers["Authorization"].removeprefix("Bearer ")

    stored = await pool.fetchval("SELECT token_hash FROM api_tokens")

    assert raw not in stored
    assert stored == tokens.hash_token(raw)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/trainings", training("other/faces")),
        ("GET", "/v1/destinations/other/faces", None),
        ("PUT", "/v1/destinations/other/faces", {}),
        ("GET", "/v1/destinations/other/faces/versions", None),
        ("PUT", "/v1/destinations/other/faces/aliases/prod", {"version_id": "a" * 64}),
        ("GET", "/v1/destinations?owner=other", None),
        ("GET", "/v1/trainings?destination=other/faces", None),
    ],
)
async def test_scoped_token_is_forbidden_other_owners(
    client: TestClient, pool: asyncpg.Pool, method: str, path: str, body: dict | None
) -> None:
    headers = await token(pool, "acme-only", "acme")

    response = await client.request(method, path, json=body, headers=headers)

    assert response.status == 403
    assert "may not use destinations of other" in (await response.json())["detail"]


async def test_scoped_token_cannot_read_another_owners_training(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    everything = await token(pool, "platform")
    scoped = await token(pool, "acme-only", "acme")
    created = await client.post(
        "/v1/trainings", json=training("other/x"), headers=everything
    )
    training_id = (await created.json())["id"]

    for path in ("", "/events", "/notifications"):
        response = await client.get(
            f"/v1/trainings/{training_id}{path}", headers=scoped
        )
        assert response.status == 403, path
    cancel = await client.post(f"/v1/trainings/{training_id}/cancel", headers=scoped)
    assert cancel.status == 403


async def test_scoped_token_lists_only_its_owners(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    everything = await token(pool, "platform")
    scoped = await token(pool, "acme-only", "acme")
    for destination in ("acme/a", "other/b", "acme/c"):
        await client.post(
            "/v1/trainings", json=training(destination), headers=everything
        )

    trainings = await (await client.get("/v1/trainings", headers=scoped)).json()
    destinations = await (await client.get("/v1/destinations", headers=scoped)).json()

    assert sorted(t["destination"] for t in trainings["results"]) == [
        "acme/a",
        "acme/c",
    ]
    assert [d["owner"] for d in destinations["results"]] == ["acme", "acme"]


async def test_replicate_webhooks_need_their_signature_not_a_token(
    client: TestClient,
) -> None:
    body, headers = signed_webhook(
        WEBHOOK_SECRET, replicate_training("r8a", "processing").raw()
    )

    response = await client.post("/webhooks/replicate", data=body, headers=headers)

    assert response.status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_operations_endpoints_are_open_by_default(
    client: TestClient, path: str
) -> None:
    response = await client.get(path)

    assert response.status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_operations_token_protects_operations_endpoints(
    app_client: AppFactory, clean_database: str, path: str
) -> None:
    client = await app_client(
        clean_database, TUNEYARD_OPS_TOKEN="ops-secret-123", **AUTH_ON
    )

    refused = await client.get(path)
    wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
    allowed = await client.get(path, headers={"Authorization": "Bearer ops-secret-123"})

    assert (refused.status, wrong.status, allowed.status) == (401, 401, 200)


async def test_without_auth_required_requests_are_the_anonymous_callers(
    app_client: AppFactory, clean_database: str
) -> None:
    client = await app_client(clean_database, TUNEYARD_AUTH_REQUIRED="false")

    response = await client.post("/v1/trainings", json=training())

    assert (await response.json())["caller"] == "anonymous"
