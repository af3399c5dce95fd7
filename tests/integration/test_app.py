"""The application on a real port: problems, request ids, access lines, readiness."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import struct
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.errors import Conflict
from service.logs import configure_logging
from service.resources import POOL
from service.store.pool import create_pool

from ..support import databases
from ..support.proxy import DatabaseProxy
from ..support.simulator import wait_until
from .conftest import AppFactory


@pytest.fixture
def log_stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    return stream


def events(stream: io.StringIO, name: str) -> list[dict]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["event"] == name]


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internal detail")


async def _conflict(request: web.Request) -> web.Response:
    raise Conflict("training trn_1 has already finished")


async def _cancelled(request: web.Request) -> web.Response:
    # What a request sees when its task is cancelled, as when the client goes
    # away mid-body or a second signal forces the shutdown.
    raise asyncio.CancelledError


async def _query(request: web.Request) -> web.Response:
    return web.json_response(await request.app[POOL].fetchval("SELECT 1"))


def _add_test_routes(app: web.Application) -> None:
    app.router.add_get("/test/boom", _boom)
    app.router.add_get("/test/conflict", _conflict)
    app.router.add_get("/test/cancelled", _cancelled)
    app.router.add_get("/test/query", _query)


@pytest.fixture
def client_for(app_client: AppFactory) -> Callable[[str], Awaitable[TestClient]]:
    """The app with routes that fail in known ways, for the middleware's sake."""

    async def start(database_url: str) -> TestClient:
        return await app_client(database_url, prepare=_add_test_routes)

    return start


@pytest.fixture
async def client(client_for: Callable, clean_database: str) -> TestClient:
    return await client_for(clean_database)


async def test_unexpected_error_is_a_500_problem_without_internals(
    client: TestClient, log_stream: io.StringIO
) -> None:
    response = await client.get("/test/boom")

    assert response.status == 500
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == 500
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "secret internal detail" not in json.dumps(body)
    assert "Traceback" not in json.dumps(body)
    [logged] = events(log_stream, "unhandled_error")
    assert logged["request_id"] == body["request_id"]


async def test_problem_error_keeps_its_status_and_detail(client: TestClient) -> None:
    response = await client.get("/test/conflict")

    assert response.status == 409
    assert await response.json() == {
        "type": "/problems/conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "training trn_1 has already finished",
    }


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/no/such/path", 404), ("DELETE", "/healthz", 405)],
)
async def test_routing_errors_are_problems(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)

    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert (await response.json())["status"] == status


async def test_request_id_sent_by_caller_is_returned_and_logged(
    client: TestClient, log_stream: io.StringIO
) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "caller-42"})

    assert response.headers["X-Request-ID"] == "caller-42"
    [access] = events(log_stream, "http_request")
    assert access["request_id"] == "caller-42"
    assert (access["method"], access["path"], access["status"]) == (
        "GET",
        "/healthz",
        200,
    )


@pytest.mark.parametrize("sent", ["has spaces", "x" * 129, "semi;colon", ""])
async def test_unsafe_request_id_is_replaced(client: TestClient, sent: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": sent})

    returned = response.headers["X-Request-ID"]
    assert returned != sent
    assert len(returned) == 32


async def test_one_access_line_per_request(
    client: TestClient, log_stream: io.StringIO
) -> None:
    for _ in range(3):
        await client.get("/healthz")
    await client.get("/missing")

    lines = events(log_stream, "http_request")
    assert [line["status"] for line in lines] == [200, 200, 200, 404]
    assert len({line["request_id"] for line in lines}) == 4


async def test_a_cancelled_request_is_logged_as_closed_not_as_failed(
    client: TestClient, log_stream: io.StringIO
) -> None:
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.get("/test/cancelled")

    [access] = events(log_stream, "http_request")
    assert (access["path"], access["status"]) == ("/test/cancelled", 499)
    assert events(log_stream, "unhandled_error") == []


@pytest.mark.parametrize("path", ["/webhooks/replicate", "/v1/trainings"])
@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_a_client_gone_mid_body_is_logged_as_closed_not_as_the_database(
    client: TestClient, log_stream: io.StringIO, path: str, reset: bool
) -> None:
    _, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: tuneyard\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        '{"id": "r8'.encode()
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    if reset:
        # Linger 0: the close sends a reset rather than a FIN, as a load
        # generator stopping mid-request does.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()

    [access] = await wait_until(
        lambda: events(log_stream, "http_request"), message="the access line"
    )
    assert (access["path"], access["status"]) == (path, 499)
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [line for line in lines if line["level"] != "info"] == []


async def test_readyz_answers_ready_when_database_is_current(
    client: TestClient,
) -> None:
    response = await client.get("/readyz")

    assert response.status == 200
    assert await response.json() == {"status": "ready"}


async def test_readyz_fails_while_database_is_down_and_recovers(
    client_for: Callable, proxied_database_url: str, db_proxy: DatabaseProxy
) -> None:
    client = await client_for(proxied_database_url)
    assert (await client.get("/readyz")).status == 200

    await db_proxy.cut()
    down = await client.get("/readyz")
    query_down = await client.get("/test/query")
    await db_proxy.restore()
    up = await client.get("/readyz")

    assert down.status == 503
    assert down.content_type == "application/problem+json"
    assert "database unreachable" in (await down.json())["detail"]
    assert query_down.status == 503
    assert query_down.headers["Retry-After"] == "1"
    assert up.status == 200


async def test_a_database_that_stops_answering_gets_503s_not_hung_requests(
    app_client: AppFactory, proxied_database_url: str, db_proxy: DatabaseProxy
) -> None:
    # A partition drops packets rather than refusing them: without a bound on
    # each query, these requests would wait for as long as the silence lasts.
    client = await app_client(
        proxied_database_url, prepare=_add_test_routes, TUNEYARD_DB_TIMEOUT="1"
    )
    assert (await client.get("/test/query")).status == 200

    db_proxy.hold()
    try:
        async with asyncio.timeout(20):
            query = await client.get("/test/query")
            ready = await client.get("/readyz")
    finally:
        db_proxy.release()

    assert query.status == 503
    assert query.content_type == "application/problem+json"
    assert ready.status == 503
    assert "did not answer" in (await ready.json())["detail"]

    async def recovered() -> bool:
        return (await client.get("/readyz")).status == 200

    await wait_until(recovered, timeout=20, message="ready again")


async def test_a_connection_the_server_ended_is_a_503_and_then_replaced(
    app_client: AppFactory,
    clean_database: str,
    proxied_database_url: str,
    db_proxy: DatabaseProxy,
) -> None:
    # A restarting server ends each session with a FATAL message before it
    # closes the socket. A pooled connection used between the two is in a state
    # asyncpg answers with InternalClientError, not a connection error. The
    # proxy keeps the socket open after the server's close, to hold that moment.
    client = await app_client(proxied_database_url, prepare=_add_test_routes)
    assert (await client.get("/test/query")).status == 200
    db_proxy.linger = True

    admin = await asyncpg.connect(clean_database)
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert ended >= 1
    await asyncio.sleep(0.2)  # the FATAL messages reach the pooled connections

    broken = await client.get("/test/query")

    assert broken.status == 503
    assert broken.content_type == "application/problem+json"
    assert broken.headers["Retry-After"] == "1"

    async def replaced() -> bool:
        return (await client.get("/test/query")).status == 200

    await wait_until(replaced, timeout=10, message="a fresh connection")


async def test_a_timed_out_query_hands_its_connection_back_without_waiting(
    proxied_database_url: str, db_proxy: DatabaseProxy
) -> None:
    # After a timeout asyncpg asks the server to cancel the query and, by itself,
    # waits up to the query timeout again for a confirmation that a silent
    # network never sends; the pool drops the connection instead.
    pool = await create_pool(proxied_database_url, max_size=2, query_timeout=60)
    try:
        db_proxy.hold()
        try:
            async with asyncio.timeout(20):
                with pytest.raises(TimeoutError):
                    async with pool.acquire() as conn:
                        await conn.fetchval("SELECT 1", timeout=0.5)
        finally:
            db_proxy.release()
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_waiting_for_a_connection_is_bounded_by_the_query_timeout(
    proxied_database_url: str, db_proxy: DatabaseProxy
) -> None:
    # While a silent database holds every connection, a request waiting for
    # one must get its 503 after one bound, not after the requests ahead of it.
    pool = await create_pool(proxied_database_url, max_size=1, query_timeout=1)
    acquired = False

    async def wait_for_the_connection() -> None:
        nonlocal acquired
        async with pool.acquire():
            acquired = True

    try:
        db_proxy.hold()
        try:
            holder = asyncio.create_task(pool.fetchval("SELECT 1", timeout=5))
            await asyncio.sleep(0.2)
            with pytest.raises(TimeoutError):
                await wait_for_the_connection()
            # Given up on while the connection was still held, not after.
            holder_was_waiting = not holder.done()
            with pytest.raises(TimeoutError):
                await holder
        finally:
            db_proxy.release()
        assert holder_was_waiting
        assert not acquired
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        ("UPDATE schema_migrations SET checksum = 'edited'", "was changed after"),
        ("DELETE FROM schema_migrations", "not applied: 0001_initial.sql, 0002"),
    ],
)
async def test_readyz_fails_when_migrations_are_not_current(
    empty_database: str, client_for: Callable, tamper: str, detail: str
) -> None:
    await databases.migrate(empty_database)
    client = await client_for(empty_database)
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute(tamper)
    finally:
        await conn.close()

    response = await client.get("/readyz")

    assert response.status == 503
    assert detail in (await response.json())["detail"]
