"""POST /webhooks/replicate over real HTTP: verified, recorded once, never a 5xx."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from service.resources import INGESTOR

from ..support.factories import queued_training, replicate_training
from ..support.proxy import DatabaseProxy
from ..support.simulator import wait_until
from ..support.webhooks import signed_webhook
from .conftest import WEBHOOK_SECRET, AppFactory

OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-for-rotation!!").decode()


def training_body(replicate_id: str, status: str) -> dict:
    return replicate_training(replicate_id, status).raw()


async def post(client: TestClient, body: bytes, headers: dict, query: str = ""):
    return await client.post(f"/webhooks/replicate{query}", data=body, headers=headers)


async def one_writer(
    app_client: AppFactory, database_url: str, query_timeout: int
) -> TestClient:
    """The service with every webhook going to one writer, so a webhook queues
    behind the batch before it."""
    return await app_client(
        database_url,
        TUNEYARD_DB_TIMEOUT=str(query_timeout),
        TUNEYARD_WEBHOOK_WRITERS="1",
    )


async def test_signed_webhook_moves_the_training_named_in_its_url(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        training = await queued_training(conn)
    body, headers = signed_webhook(WEBHOOK_SECRET, training_body("r8a", "processing"))

    response = await post(client, body, headers, f"?training_id={training.id}")

    assert response.status == 200
    assert await response.json() == {
        "received": True,
        "duplicate": False,
        "known": True,
    }
    row = await pool.fetchrow("SELECT status, replicate_id FROM trainings")
    assert (row["status"], row["replicate_id"]) == ("running", "r8a")


async def test_redelivered_webhook_is_acknowledged_as_duplicate(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    body, headers = signed_webhook(WEBHOOK_SECRET, training_body("r8a", "succeeded"))
    await post(client, body, headers)

    # Replicate resends under the same webhook-id with a new timestamp.
    later = datetime.now(UTC) + timedelta(seconds=30)
    body, headers = signed_webhook(
        WEBHOOK_SECRET,
        training_body("r8a", "succeeded"),
        webhook_id=headers["webhook-id"],
        timestamp=later,
    )
    response = await post(client, body, headers)

    assert response.status == 200
    assert (await response.json())["duplicate"] is True
    assert await pool.fetchval("SELECT count(*) FROM training_events") == 1


async def test_webhook_for_unknown_training_is_kept_and_acknowledged(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    body, headers = signed_webhook(WEBHOOK_SECRET, training_body("r8-web", "succeeded"))

    response = await post(client, body, headers)

    assert response.status == 200
    assert (await response.json())["known"] is False
    assert await pool.fetchval("SELECT replicate_id FROM training_events") == "r8-web"


async def test_either_secret_verifies_while_rotating(
    app_client: AppFactory, clean_database: str
) -> None:
    client = await app_client(
        clean_database, REPLICATE_WEBHOOK_SECRET=f"{OTHER_SECRET},{WEBHOOK_SECRET}"
    )

    for secret in (WEBHOOK_SECRET, OTHER_SECRET):
        body, headers = signed_webhook(secret, training_body("r8a", "processing"))
        assert (await post(client, body, headers)).status == 200


def _tamper_signature(headers: dict) -> None:
    headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()


def _stale(headers: dict) -> None:
    headers["webhook-timestamp"] = str(int(datetime.now(UTC).timestamp()) - 3600)


def _no_id(headers: dict) -> None:
    del headers["webhook-id"]


def _garbled_signature(headers: dict) -> None:
    headers["webhook-signature"] = "v1"


@pytest.mark.parametrize(
    ("tamper", "status", "detail"),
    [
        (_tamper_signature, 401, "matches none of the secrets"),
        (_stale, 400, "more than 5 minutes from now"),
        (_no_id, 400, "the webhook-id header is missing"),
        (_garbled_signature, 400, "entries must be version,signature"),
    ],
)
async def test_webhook_that_cannot_be_verified_is_a_4xx_problem(
    client: TestClient, pool: asyncpg.Pool, tamper, status: int, detail: str
) -> None:
    body, headers = signed_webhook(WEBHOOK_SECRET, training_body("r8a", "processing"))
    tamper(headers)

    response = await post(client, body, headers)

    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert detail in (await response.json())["detail"]
    assert await pool.fetchval("SELECT count(*) FROM training_events") == 0


async def test_webhooks_arriving_together_are_each_judged_on_their_own(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    # Sent at once, they are verified and read as one batch: a forged or
    # malformed one is refused alone, and every good one beside it is recorded.
    good = [
        signed_webhook(WEBHOOK_SECRET, training_body(f"r8-{n}", "processing"))
        for n in range(8)
    ]
    forged_body, forged = signed_webhook(
        WEBHOOK_SECRET, training_body("r8-forged", "succeeded")
    )
    _tamper_signature(forged)
    malformed = signed_webhook(WEBHOOK_SECRET, b"{not json")
    sent = [*good[:4], (forged_body, forged), malformed, *good[4:]]

    responses = await asyncio.gather(*(post(client, b, h) for b, h in sent))

    assert [r.status for r in responses] == [200] * 4 + [401, 400] + [200] * 4
    recorded = await pool.fetch("SELECT replicate_id FROM training_events")
    assert sorted(r["replicate_id"] for r in recorded) == [f"r8-{n}" for n in range(8)]


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "not a training object"),
        (b'{"status": "succeeded"}', "needs a string id and status"),
        (b'{"id": 5, "status": "succeeded"}', "needs a string id and status"),
    ],
)
async def test_signed_but_malformed_body_is_a_400_problem(
    client: TestClient, raw: bytes, detail: str
) -> None:
    body, headers = signed_webhook(WEBHOOK_SECRET, raw)

    response = await post(client, body, headers)

    assert response.status == 400
    assert detail in (await response.json())["detail"]


async def test_body_over_the_limit_is_refused_before_it_is_read(
    app_client: AppFactory, clean_database: str
) -> None:
    client = await app_client(clean_database, TUNEYARD_WEBHOOK_MAX_BYTES="4096")
    body, headers = signed_webhook(
        WEBHOOK_SECRET, {"id": "r8a", "status": "x", "logs": "y" * 8000}
    )

    response = await post(client, body, headers)

    assert response.status == 413
    assert response.content_type == "application/problem+json"


async def test_bad_training_id_in_the_url_is_ignored_not_an_error(
    client: TestClient,
) -> None:
    body, headers = signed_webhook(WEBHOOK_SECRET, training_body("r8a", "processing"))

    response = await post(client, body, headers, "?training_id=%27;drop%20table")

    assert response.status == 200
    assert (await response.json())["known"] is False


async def test_unstorable_characters_from_replicate_are_kept_scrubbed(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        training = await queued_training(conn)
    body = training_body("r8a", "failed")
    body["error"] = "bad\u0000byte"
    body["logs"] = "half \ud800 a pair"
    raw, headers = signed_webhook(WEBHOOK_SECRET, body)

    response = await post(client, raw, headers, f"?training_id={training.id}")

    assert response.status == 200
    error = await pool.fetchval("SELECT error FROM trainings")
    assert error == "bad\ufffdbyte"
    stored = await pool.fetchval("SELECT body->>'logs' FROM training_events")
    assert stored == "half ? a pair"


async def test_while_the_database_is_silent_a_queued_webhook_still_gets_a_prompt_503(
    app_client: AppFactory, proxied_database_url: str, db_proxy: DatabaseProxy
) -> None:
    # The second webhook queues behind the first one's stuck batch (same training,
    # so same writer). It must not wait for that batch's timeout and then its own:
    # Replicate would give up on it, and an API gateway before that.
    query_timeout = 4
    client = await one_writer(app_client, proxied_database_url, query_timeout)
    loop = asyncio.get_running_loop()
    db_proxy.hold()
    try:
        first = asyncio.create_task(
            post(
                client,
                *signed_webhook(WEBHOOK_SECRET, training_body("r8a", "processing")),
            )
        )
        await asyncio.sleep(0.5)
        began = loop.time()
        second = await post(
            client, *signed_webhook(WEBHOOK_SECRET, training_body("r8a", "succeeded"))
        )
        waited = loop.time() - began
        first_answer = await first
    finally:
        db_proxy.release()

    for answer in (first_answer, second):
        assert answer.status == 503
        assert answer.content_type == "application/problem+json"
        assert answer.headers["Retry-After"] == "1"
    # Its own query timeout and the connection's release, with room for a slow
    # machine; queued behind the first batch it would be twice that.
    assert waited < query_timeout + 3.5


async def test_a_webhook_answered_503_while_queued_is_not_written_afterwards(
    app_client: AppFactory,
    proxied_database_url: str,
    db_proxy: DatabaseProxy,
    pool: asyncpg.Pool,
) -> None:
    # Replicate sends it again; writing it late would only make the webhooks
    # queued behind it miss their own deadlines after an outage.
    client = await one_writer(app_client, proxied_database_url, query_timeout=4)
    # Answer queued webhooks well before the stuck batch's query times out, so
    # the second is answered while the first still holds the writer.
    client.server.app[INGESTOR].answer_within = 1.0
    stuck, stuck_headers = signed_webhook(
        WEBHOOK_SECRET, training_body("r8a", "processing")
    )
    late, late_headers = signed_webhook(
        WEBHOOK_SECRET, training_body("r8a", "succeeded")
    )
    db_proxy.hold()
    try:
        first = asyncio.create_task(post(client, stuck, stuck_headers))
        await asyncio.sleep(0.3)
        second = await post(client, late, late_headers)
        assert (await first).status == 503
    finally:
        db_proxy.release()
    assert second.status == 503

    # The same training, so the same writer: once this one is answered, the
    # writer has dealt with everything queued before it.
    after = await post(
        client, *signed_webhook(WEBHOOK_SECRET, training_body("r8a", "canceled"))
    )

    assert after.status == 200
    recorded = await pool.fetchval(
        "SELECT count(*) FROM training_events WHERE webhook_id = $1",
        late_headers["webhook-id"],
    )
    assert recorded == 0


async def test_a_committed_webhook_is_answered_though_the_next_batch_is_stuck(
    app_client: AppFactory,
    proxied_database_url: str,
    db_proxy: DatabaseProxy,
    pool: asyncpg.Pool,
) -> None:
    # A batch's answers wait for the next batch's read (webhooks.ingest._Answers),
    # but only for a moment: here that read never returns, and the first
    # webhook, already committed, must not wait for its timeout.
    query_timeout = 4
    client = await one_writer(app_client, proxied_database_url, query_timeout)
    first, first_headers = signed_webhook(
        WEBHOOK_SECRET, training_body("r8a", "processing")
    )
    second, second_headers = signed_webhook(
        WEBHOOK_SECRET, training_body("r8b", "processing")
    )
    loop = asyncio.get_running_loop()
    # The first batch's read is held until the second webhook waits behind it;
    # the second's read, whenever it is sent, is held for good.
    first_read = db_proxy.stop_at(first_headers["webhook-id"].encode())
    second_read = db_proxy.stop_at(second_headers["webhook-id"].encode())
    try:
        first_answer = asyncio.create_task(post(client, first, first_headers))
        await asyncio.wait_for(first_read.reached(), 5)
        second_answer = asyncio.create_task(post(client, second, second_headers))
        await asyncio.sleep(0.3)
        first_read.release()
        began = loop.time()
        answer = await first_answer
        waited = loop.time() - began
        await asyncio.wait_for(second_read.reached(), 5)
    finally:
        first_read.release()
        second_read.release()

    assert answer.status == 200
    assert (await answer.json())["duplicate"] is False
    # A commit and a moment, far below the stuck read's timeout.
    assert waited < query_timeout / 2
    recorded = await pool.fetchval(
        "SELECT count(*) FROM training_events WHERE webhook_id = $1",
        first_headers["webhook-id"],
    )
    assert recorded == 1
    assert (await second_answer).status == 200


async def test_webhooks_queued_behind_a_batch_are_written_in_even_halves(
    app_client: AppFactory,
    proxied_database_url: str,
    db_proxy: DatabaseProxy,
    pool: asyncpg.Pool,
) -> None:
    # While one batch is written, forty webhooks queue behind it. A writer takes
    # half of what waits, counting the batch just written (webhooks.ingest.
    # _even_share), so the forty go as 21 and 19, each batch in one statement,
    # and none is left behind.
    client = await one_writer(app_client, proxied_database_url, query_timeout=10)
    first, first_headers = signed_webhook(
        WEBHOOK_SECRET, training_body("r8first", "processing")
    )
    queued = [
        signed_webhook(WEBHOOK_SECRET, training_body(f"r8q{n}", "processing"))
        for n in range(40)
    ]
    first_read = db_proxy.stop_at(first_headers["webhook-id"].encode())
    verified_before = verified_webhooks()
    try:
        first_answer = asyncio.create_task(post(client, first, first_headers))
        await asyncio.wait_for(first_read.reached(), 5)
        answers = [
            asyncio.create_task(post(client, body, headers)) for body, headers in queued
        ]
        await wait_until(
            lambda: verified_webhooks() == verified_before + 41,
            timeout=5,
            message="all 41 webhooks verified and queued",
        )
    finally:
        first_read.release()

    statuses = [response.status for response in await asyncio.gather(*answers)]
    assert (await first_answer).status == 200
    assert statuses == [200] * 40
    # One statement writes a batch's events, so they share a received_at.
    sizes = await pool.fetch(
        "SELECT count(*) FROM training_events GROUP BY received_at ORDER BY received_at"
    )
    assert [row[0] for row in sizes] == [1, 21, 19]


def verified_webhooks() -> float:
    return REGISTRY.get_sample_value("tuneyard_webhooks_verified_total") or 0.0


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_a_body_with_a_non_json_number_is_a_400_problem(
    client: TestClient, pool: asyncpg.Pool, constant: str
) -> None:
    # Python's JSON readers take these; JSON (RFC 8259) and PostgreSQL do not.
    # Refused up front, the webhook is bad input, not a failed write.
    body = b'{"id": "r8a", "status": "processing", "metrics": {"loss": %s}}' % (
        constant.encode()
    )
    response = await post(client, *signed_webhook(WEBHOOK_SECRET, body))

    assert response.status == 400
    assert response.content_type == "application/problem+json"
    assert "JSON" in (await response.json())["detail"]
    assert await pool.fetchval("SELECT count(*) FROM training_events") == 0


async def test_those_words_inside_a_string_are_kept(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    body = {"id": "r8a", "status": "processing", "logs": "loss=NaN, lr=Infinity"}
    response = await post(client, *signed_webhook(WEBHOOK_SECRET, body))

    assert response.status == 200
    stored = await pool.fetchval("SELECT body->>'logs' FROM training_events")
    assert stored == "loss=NaN, lr=Infinity"
