"""Destinations and versions where Replicate takes part: ensure, sync, delete."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp.test_utils import TestClient

from service.simulator.resources import STORE

from ..support.simulator import Simulator, wait_until
from .conftest import LiveApp

BASE = "/v1/destinations/local/faces"


async def make_model(
    simulator: Simulator, name: str = "faces", **settings: str
) -> None:
    body = {"owner": "local", "name": name, "visibility": "private", "hardware": "cpu"}
    body.update(settings)
    async with (
        simulator.api_session() as replicate,
        replicate.post("/v1/models", json=body) as response,
    ):
        assert response.status == 201, await response.text()


async def synced_version(
    live_app: LiveApp, simulator: Simulator, **model_settings: str
) -> tuple[TestClient, str]:
    """A model on Replicate with one version, and Tuneyard (workers off) with
    that version imported by a sync."""
    await make_model(simulator, **model_settings)
    version = (await simulator.push_version("local", "faces"))["id"]
    client = await live_app(TUNEYARD_WORKERS="false")
    await client.post(f"{BASE}/sync")
    return client, version


async def test_put_destination_creates_the_model_on_replicate_and_repeats_safely(
    live_app: LiveApp, simulator: Simulator
) -> None:
    client = await live_app(TUNEYARD_WORKERS="false")
    settings = {"visibility": "public", "hardware": "gpu-t4", "description": "faces"}

    first = await client.put(BASE, json=settings)
    second = await client.put(BASE, json=settings)

    assert first.status == 201
    assert second.status == 200
    body = await second.json()
    assert body["on_replicate"] is True
    assert (body["visibility"], body["hardware"]) == ("public", "gpu-t4")
    assert (await simulator.stats())["creations"] == {"models": 1}


async def test_put_destination_for_an_existing_model_does_not_create_it(
    live_app: LiveApp, simulator: Simulator
) -> None:
    await make_model(simulator)
    client = await live_app(TUNEYARD_WORKERS="false")

    response = await client.put(BASE, json={})

    assert response.status == 201
    assert (await simulator.stats())["creations"] == {"models": 1}


async def test_put_destination_replicate_refuses_is_a_4xx_with_its_reason(
    live_app: LiveApp,
) -> None:
    client = await live_app(TUNEYARD_WORKERS="false")

    response = await client.put("/v1/destinations/someone-else/faces", json={})

    assert response.status == 422
    assert response.content_type == "application/problem+json"
    assert (await response.json())["title"] == "Replicate refused the request"


async def test_sync_imports_every_version_made_elsewhere_and_is_idempotent(
    live_app: LiveApp, simulator: Simulator
) -> None:
    await make_model(simulator)
    pushed = [(await simulator.push_version("local", "faces"))["id"] for _ in range(8)]
    client = await live_app(TUNEYARD_WORKERS="false")

    first = await (await client.post(f"{BASE}/sync")).json()
    second = await (await client.post(f"{BASE}/sync")).json()

    assert first == {"destination": "local/faces", "seen": 8, "imported": 8}
    assert second == {"destination": "local/faces", "seen": 8, "imported": 0}
    page = await (await client.get(f"{BASE}/versions?limit=100")).json()
    assert [v["id"] for v in page["results"]] == list(reversed(pushed))
    assert {v["source"] for v in page["results"]} == {"sync"}
    assert all(v["lineage"] is None for v in page["results"])


async def test_sync_of_a_model_replicate_does_not_have_is_a_404(
    live_app: LiveApp,
) -> None:
    client = await live_app(TUNEYARD_WORKERS="false")

    response = await client.post(f"{BASE}/sync")

    assert response.status == 404


async def test_deleting_a_version_is_accepted_by_replicate_and_recorded(
    live_app: LiveApp, simulator: Simulator
) -> None:
    await make_model(simulator)
    keep, gone = [
        (await simulator.push_version("local", "faces"))["id"] for _ in range(2)
    ]
    client = await live_app(TUNEYARD_WORKERS="false")
    await client.post(f"{BASE}/sync")

    response = await client.delete(f"{BASE}/versions/{gone}")

    assert response.status == 202
    assert (await response.json())["deleted_at"] is not None
    live = await (await client.get(f"{BASE}/versions")).json()
    assert [v["id"] for v in live["results"]] == [keep]
    async with (
        simulator.api_session() as replicate,
        replicate.get(f"/v1/models/local/faces/versions/{gone}") as on_replicate,
    ):
        assert on_replicate.status == 404


async def test_deleting_a_version_replicate_refuses_is_a_409_with_its_reason(
    live_app: LiveApp, simulator: Simulator, pool: asyncpg.Pool
) -> None:
    client, version = await synced_version(live_app, simulator, visibility="public")

    response = await client.delete(f"{BASE}/versions/{version}")

    assert response.status == 409
    problem = await response.json()
    assert problem["detail"].startswith(
        f"Replicate refused to delete version {version}:"
    )
    assert problem["replicate_status"] == 409
    assert await pool.fetchval("SELECT deleted_at FROM versions") is None


async def test_deleting_an_aliased_version_is_refused_until_the_alias_moves(
    live_app: LiveApp, simulator: Simulator
) -> None:
    client, version = await synced_version(live_app, simulator)
    await client.put(f"{BASE}/aliases/production", json={"version_id": version})

    refused = await client.delete(f"{BASE}/versions/@production")
    await client.delete(f"{BASE}/aliases/production")
    accepted = await client.delete(f"{BASE}/versions/{version}")

    assert refused.status == 409
    assert "aliased as production" in (await refused.json())["detail"]
    assert accepted.status == 202


async def test_version_deleted_on_replicate_already_is_recorded_deleted(
    live_app: LiveApp, simulator: Simulator
) -> None:
    client, version = await synced_version(live_app, simulator)
    async with simulator.api_session() as replicate:
        await replicate.delete(f"/v1/models/local/faces/versions/{version}")

    response = await client.delete(f"{BASE}/versions/{version}")

    assert response.status == 202


async def test_an_alias_cannot_name_a_version_while_replicate_deletes_it(
    live_app: LiveApp, simulator: Simulator, pool: asyncpg.Pool
) -> None:
    client, version = await synced_version(live_app, simulator)
    # The simulator deletes at once and answers a second later: the moment in
    # which an alias move must not slip in.
    await simulator.set_faults(latency_ms=1000)
    model = simulator.app[STORE].model("local", "faces")

    deleting = asyncio.create_task(client.delete(f"{BASE}/versions/{version}"))
    await wait_until(
        lambda: model.version(version) is None, message="the deletion on Replicate"
    )
    aliased = await client.put(
        f"{BASE}/aliases/production", json={"version_id": version}
    )
    deleted = await deleting

    assert aliased.status == 409
    assert "was deleted" in (await aliased.json())["detail"]
    assert deleted.status == 202
    assert await pool.fetchval("SELECT count(*) FROM aliases") == 0


async def test_a_deletion_whose_answer_never_comes_stays_marked_until_repeated(
    live_app: LiveApp, simulator: Simulator, pool: asyncpg.Pool
) -> None:
    client, version = await synced_version(live_app, simulator)
    model = simulator.app[STORE].model("local", "faces")
    await simulator.set_faults(error_rate=1.0)

    failed = await client.delete(f"{BASE}/versions/{version}")
    marked_at = await pool.fetchval("SELECT deleted_at FROM versions")
    still_on_replicate = model.version(version) is not None
    await simulator.set_faults(error_rate=0.0)
    repeated = await client.delete(f"{BASE}/versions/{version}")

    assert failed.status >= 500
    assert failed.content_type == "application/problem+json"
    assert marked_at is not None
    assert still_on_replicate
    assert repeated.status == 202
    assert model.version(version) is None
    assert await pool.fetchval("SELECT deleted_at FROM versions") == marked_at


async def test_a_version_replicate_keeps_is_live_again_however_old_its_mark(
    live_app: LiveApp, simulator: Simulator, pool: asyncpg.Pool
) -> None:
    # A mark left by an earlier DELETE whose answer never came, on a model
    # made public since: Replicate's 409 says the version exists.
    client, version = await synced_version(live_app, simulator, visibility="public")
    await pool.execute("UPDATE versions SET deleted_at = now() - interval '1 day'")

    response = await client.delete(f"{BASE}/versions/{version}")

    assert response.status == 409
    assert await pool.fetchval("SELECT deleted_at FROM versions") is None


async def test_a_version_marked_deleted_but_still_on_replicate_is_deleted_again(
    live_app: LiveApp, simulator: Simulator, pool: asyncpg.Pool
) -> None:
    # What a crash between the mark and Replicate's answer leaves behind.
    client, version = await synced_version(live_app, simulator)
    await pool.execute("UPDATE versions SET deleted_at = now() - interval '1 hour'")
    marked_at = await pool.fetchval("SELECT deleted_at FROM versions")

    response = await client.delete(f"{BASE}/versions/{version}")

    assert response.status == 202
    assert await pool.fetchval("SELECT deleted_at FROM versions") == marked_at
    async with (
        simulator.api_session() as replicate,
        replicate.get(f"/v1/models/local/faces/versions/{version}") as on_replicate,
    ):
        assert on_replicate.status == 404
