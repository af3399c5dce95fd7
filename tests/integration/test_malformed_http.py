"""Requests aiohttp's parser refuses still get a problem, and never an echo."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from service.api.server import AppRunner
from service.logs import configure_logging

SECRET = "r8_do-not-echo-this-token"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    runner = AppRunner(web.Application(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def exchange(port: int, request: bytes) -> tuple[bytes, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        # The server closes the connection after such an answer.
        raw = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, json.loads(body)


@pytest.mark.parametrize(
    ("line", "reason", "detail"),
    [
        (
            f"Authorization: Bearer {SECRET}{'x' * 9000}",
            "line_too_long",
            "longer than the 8190 bytes",
        ),
        (
            f"Authorization: Bearer {SECRET}\x01",
            "malformed_http",
            "Invalid header value char",
        ),
    ],
    ids=["header line too long", "control character"],
)
async def test_a_malformed_header_is_a_400_problem_that_does_not_echo_it(
    port: int, line: str, reason: str, detail: str
) -> None:
    logs = io.StringIO()
    configure_logging("info", "json", logs)

    head, problem = await exchange(
        port, f"GET / HTTP/1.1\r\nHost: t\r\n{line}\r\n\r\n".encode()
    )

    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b"Content-Type: application/problem+json" in head
    assert problem["status"] == 400
    assert problem["reason"] == reason
    assert detail in problem["detail"]
    assert SECRET not in json.dumps(problem)
    # Logged once, by reason, and neither the header nor a traceback quoting it.
    logged = [json.loads(entry) for entry in logs.getvalue().splitlines()]
    assert [entry["event"] for entry in logged] == ["http_request_malformed"]
    assert logged[0]["reason"] == reason
    assert SECRET not in logs.getvalue()


async def test_a_malformed_request_line_is_a_400_problem(port: int) -> None:
    head, problem = await exchange(port, b"GET\x01 / HTTP/1.1\r\nHost: t\r\n\r\n")

    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert problem["title"] == "Bad Request"
    assert problem["detail"].startswith("The request is not valid HTTP")
