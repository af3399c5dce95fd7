"""A destination's versions and aliases over real HTTP (no Replicate needed)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from ..support.factories import TRAINER, replicate_training
from ..support.webhooks import signed_webhook
from .conftest import WEBHOOK_SECRET

BASE = "/v1/destinations/acme/faces"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def version_id() -> str:
    return secrets.token_hex(32)


async def add_versions(pool: asyncpg.Pool, count: int, *, start: int = 0) -> list[str]:
    """Versions as a sync would import them, one a minute from T0."""
    ids = [version_id() for _ in range(count)]
    await pool.execute(
        "INSERT INTO destinations (owner, name) VALUES ('acme', 'faces') "
        "ON CONFLICT DO NOTHING"
    )
    await pool.executemany(
        "INSERT INTO versions (owner, name, version_id, created_at, source) "
        "VALUES ('acme', 'faces', $1, $2, 'sync')",
        [(vid, T0 + timedelta(minutes=start + i)) for i, vid in enumerate(ids)],
    )
    return ids


async def trained_version(
    client: TestClient, metadata: dict[str, str]
) -> tuple[str, str]:
    """A version made by a training through the real path: API, then webhook."""
    response = await client.post(
        "/v1/trainings",
        json={
            "destination": "acme/faces",
            "trainer": TRAINER,
            "input": {"input_images": "https://example.com/a.zip"},
            "metadata": metadata,
        },
    )
    training = await response.json()
    made = version_id()
    body, headers = signed_webhook(
        WEBHOOK_SECRET,
        replicate_training(f"r8{made[:6]}", "succeeded", version_id=made).raw(),
    )
    await client.post(
        f"/webhooks/replicate?training_id={training['id']}", data=body, headers=headers
    )
    return training["id"], made


async def walk(client: TestClient, url: str, during=None) -> list[str]:
    seen: list[str] = []
    origin = str(client.make_url("")).rstrip("/")
    while url:
        page = await (await client.get(url)).json()
        seen += [v["id"] for v in page["results"]]
        if during is not None:
            await during()
        url = page["next"] and page["next"].removeprefix(origin)
    return seen


async def test_walk_to_the_end_is_newest_first_without_duplicates_or_gaps(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    ids = await add_versions(pool, 23)
    arriving = iter(range(100, 200))

    async def new_version_arrives() -> None:
        await add_versions(pool, 1, start=next(arriving))

    seen = await walk(client, f"{BASE}/versions?limit=5", during=new_version_arrives)

    assert seen == list(reversed(ids))


async def test_versions_with_the_same_time_keep_a_stable_order(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    ids = sorted(version_id() for _ in range(9))
    await add_versions(pool, 0)
    await pool.executemany(
        "INSERT INTO versions (owner, name, version_id, created_at) "
        "VALUES ('acme', 'faces', $1, $2)",
        [(vid, T0) for vid in ids],
    )

    seen = await walk(client, f"{BASE}/versions?limit=2")

    assert seen == list(reversed(ids))


async def test_versions_filter_by_created_range_and_tags(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    ids = await add_versions(pool, 5)
    await client.patch(f"{BASE}/versions/{ids[1]}", json={"tags": ["good", "faces"]})
    await client.patch(f"{BASE}/versions/{ids[3]}", json={"tags": ["good"]})

    async def listed(query: str) -> list[str]:
        page = await (await client.get(f"{BASE}/versions?{query}")).json()
        return [v["id"] for v in page["results"]]

    after = (T0 + timedelta(minutes=1)).isoformat()
    before = (T0 + timedelta(minutes=4)).isoformat().replace("+00:00", "Z")
    assert await listed(f"created_after={after}&created_before={before}") == [
        ids[3],
        ids[2],
    ]
    assert await listed("tag=good") == [ids[3], ids[1]]
    assert await listed("tag=good&tag=faces") == [ids[1]]


async def test_versions_filter_by_the_training_metadata(client: TestClient) -> None:
    _, vision = await trained_version(client, {"team": "vision"})
    _, audio = await trained_version(client, {"team": "audio"})

    page = await (await client.get(f"{BASE}/versions?metadata.team=audio")).json()

    assert [v["id"] for v in page["results"]] == [audio]
    assert vision != audio


async def test_version_shows_its_lineage(client: TestClient) -> None:
    training_id, made = await trained_version(client, {"team": "vision"})

    version = await (await client.get(f"{BASE}/versions/{made}")).json()

    assert version["lineage"] == {
        "training_id": training_id,
        "replicate_training_id": f"r8{made[:6]}",
        "trainer": TRAINER,
        "input": {"input_images": "https://example.com/a.zip"},
        "caller": "anonymous",
        "metadata": {"team": "vision"},
    }
    assert version["weights_url"].endswith("/trained_model.tar")
    assert version["source"] == "training"
    assert version["urls"]["training"].endswith(f"/v1/trainings/{training_id}")


async def test_patch_changes_description_and_replaces_tags(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    [vid] = await add_versions(pool, 1)
    await client.patch(f"{BASE}/versions/{vid}", json={"tags": ["a", "b"]})

    response = await client.patch(
        f"{BASE}/versions/{vid}", json={"description": "best so far", "tags": ["c"]}
    )
    untouched = await client.patch(f"{BASE}/versions/{vid}", json={})

    assert response.status == 200
    assert (await response.json())["tags"] == ["c"]
    body = await untouched.json()
    assert (body["description"], body["tags"]) == ("best so far", ["c"])


@pytest.mark.parametrize(
    "changes",
    [{"tags": ["has space"]}, {"tags": [f"t{i}" for i in range(33)]}, {"name": "x"}],
)
async def test_invalid_patch_is_a_422(
    client: TestClient, pool: asyncpg.Pool, changes: dict
) -> None:
    [vid] = await add_versions(pool, 1)

    response = await client.patch(f"{BASE}/versions/{vid}", json=changes)

    assert response.status == 422


async def test_alias_resolves_wherever_a_version_id_is_accepted(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    old, new = await add_versions(pool, 2)

    put = await client.put(f"{BASE}/aliases/production", json={"version_id": old})
    by_alias = await (await client.get(f"{BASE}/versions/@production")).json()
    latest = await (await client.get(f"{BASE}/versions/@latest")).json()
    await client.patch(f"{BASE}/versions/@production", json={"description": "prod"})

    assert put.status == 200
    assert by_alias["id"] == old
    assert by_alias["aliases"] == ["production"]
    assert latest["id"] == new
    assert (await (await client.get(f"{BASE}/versions/{old}")).json())[
        "description"
    ] == "prod"


async def test_alias_can_point_at_what_another_alias_names(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    old, new = await add_versions(pool, 2)
    await client.put(f"{BASE}/aliases/candidate", json={"version_id": new})

    await client.put(f"{BASE}/aliases/production", json={"version_id": "@candidate"})

    assert (await (await client.get(f"{BASE}/versions/@production")).json())[
        "id"
    ] == new
    assert old != new


async def test_moving_an_alias_is_recorded_in_its_history(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    first, second = await add_versions(pool, 2)
    await client.put(f"{BASE}/aliases/production", json={"version_id": first})
    moved = await client.put(f"{BASE}/aliases/production", json={"version_id": second})
    removed = await client.delete(f"{BASE}/aliases/production")

    history = await (await client.get(f"{BASE}/aliases/production/history")).json()

    assert (await moved.json())["previous_version_id"] == first
    assert removed.status == 204
    assert [(m["previous_version_id"], m["version_id"]) for m in history["moves"]] == [
        (None, first),
        (first, second),
        (second, None),
    ]
    assert (await client.get(f"{BASE}/versions/@production")).status == 404


async def test_two_concurrent_alias_moves_leave_one_result_and_both_recorded(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    start, a, b = await add_versions(pool, 3)
    await client.put(f"{BASE}/aliases/production", json={"version_id": start})

    await asyncio.gather(
        client.put(f"{BASE}/aliases/production", json={"version_id": a}),
        client.put(f"{BASE}/aliases/production", json={"version_id": b}),
    )

    current = (await (await client.get(f"{BASE}/versions/@production")).json())["id"]
    history = await (await client.get(f"{BASE}/aliases/production/history")).json()
    moves = [(m["previous_version_id"], m["version_id"]) for m in history["moves"]]
    assert current in (a, b)
    assert moves[0] == (None, start)
    # The moves chain: each starts where the one before it ended, and the last is
    # where the alias points now.
    assert moves[1][0] == start
    assert moves[2][0] == moves[1][1]
    assert moves[2][1] == current
    assert {moves[1][1], moves[2][1]} == {a, b}


@pytest.mark.parametrize(
    ("alias", "status"), [("latest", 422), ("Prod", 422), ("-x", 422), ("a" * 64, 422)]
)
async def test_invalid_or_reserved_alias_is_refused(
    client: TestClient, pool: asyncpg.Pool, alias: str, status: int
) -> None:
    [vid] = await add_versions(pool, 1)

    response = await client.put(f"{BASE}/aliases/{alias}", json={"version_id": vid})

    assert response.status == status


async def test_alias_to_a_missing_or_deleted_version_is_refused(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    [vid] = await add_versions(pool, 1)
    await pool.execute("UPDATE versions SET deleted_at = now()")

    missing = await client.put(f"{BASE}/aliases/prod", json={"version_id": "a" * 64})
    deleted = await client.put(f"{BASE}/aliases/prod", json={"version_id": vid})

    assert missing.status == 404
    assert deleted.status == 409


async def test_destination_shows_count_latest_and_aliases(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    ids = await add_versions(pool, 3)
    await pool.execute(
        "UPDATE versions SET deleted_at = now() WHERE version_id = $1", ids[2]
    )
    await client.put(f"{BASE}/aliases/production", json={"version_id": ids[0]})

    destination = await (await client.get(BASE)).json()

    assert destination["version_count"] == 2
    assert destination["latest_version"]["id"] == ids[1]
    assert destination["aliases"] == {"production": ids[0]}
    deleted_too = await (
        await client.get(f"{BASE}/versions?include_deleted=true")
    ).json()
    assert [v["id"] for v in deleted_too["results"]] == list(reversed(ids))


async def test_destinations_list_in_name_order_filtered_by_owner(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    for owner, name in [("acme", "b"), ("zeta", "a"), ("acme", "a"), ("acme", "c")]:
        await pool.execute(
            "INSERT INTO destinations (owner, name) VALUES ($1, $2)", owner, name
        )

    everything = await walk_destinations(client, "/v1/destinations?limit=2")
    acme = await walk_destinations(client, "/v1/destinations?owner=acme&limit=2")

    assert everything == ["acme/a", "acme/b", "acme/c", "zeta/a"]
    assert acme == ["acme/a", "acme/b", "acme/c"]


async def walk_destinations(client: TestClient, url: str) -> list[str]:
    names: list[str] = []
    origin = str(client.make_url("")).rstrip("/")
    while url:
        page = await (await client.get(url)).json()
        names += [f"{d['owner']}/{d['name']}" for d in page["results"]]
        url = page["next"] and page["next"].removeprefix(origin)
    return names


@pytest.mark.parametrize(
    "path",
    [
        "/v1/destinations/acme/nothing",
        "/v1/destinations/acme/nothing/versions",
        f"{BASE}/versions/{'a' * 64}",
        f"{BASE}/versions/not-an-id",
        f"{BASE}/versions/@nobody",
        f"{BASE}/aliases/nobody/history",
    ],
)
async def test_unknown_destinations_versions_and_aliases_are_404_problems(
    client: TestClient, pool: asyncpg.Pool, path: str
) -> None:
    await add_versions(pool, 1)

    response = await client.get(path)

    assert response.status == 404
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/destinations/Acme/faces",
        "/v1/destinations/acme/fa%20ces/versions",
        f"{BASE}/versions?created_after=yesterday",
        f"{BASE}/versions?include_deleted=maybe",
        f"{BASE}/versions?cursor=bm90LWEtY3Vyc29y",
    ],
)
async def test_malformed_names_and_parameters_are_400_problems(
    client: TestClient, pool: asyncpg.Pool, path: str
) -> None:
    await add_versions(pool, 1)

    response = await client.get(path)

    assert response.status == 400
