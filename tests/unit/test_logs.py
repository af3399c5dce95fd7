"""Logging: JSON lines off a terminal, and secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from service.logs import REDACTED, configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_logs_are_json_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("info", "auto", stream)

    get_logger().info("training_submitted", training_id="trn_1")

    line = json.loads(stream.getvalue())
    assert line["event"] == "training_submitted"
    assert line["training_id"] == "trn_1"
    assert line["level"] == "info"


def test_values_under_secret_keys_are_redacted() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)

    get_logger().info("calling", api_token="r8_abc", authorization="Bearer x")

    line = json.loads(stream.getvalue())
    assert line["api_token"] == REDACTED
    assert line["authorization"] == REDACTED
    assert "r8_abc" not in stream.getvalue()


def test_standard_library_logs_use_the_same_format() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)

    logging.getLogger("aiohttp.server").warning("something odd")

    line = json.loads(stream.getvalue())
    assert line["event"] == "something odd"
    assert line["logger"] == "aiohttp.server"


def test_bound_context_appears_on_every_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)

    with structlog.contextvars.bound_contextvars(request_id="req-1"):
        get_logger().info("one")
        get_logger().info("two")

    lines = [json.loads(raw) for raw in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["req-1", "req-1"]


def test_level_filters_out_lower_events() -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream)

    get_logger().info("quiet")
    get_logger().warning("loud")

    assert [json.loads(x)["event"] for x in stream.getvalue().splitlines()] == ["loud"]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_leave_out_local_variables(fmt: str) -> None:
    # A frame's locals hold request bodies, headers and tokens.
    stream = io.StringIO()
    configure_logging("info", fmt, stream)

    def handle(authorization: str) -> None:
        raise ValueError("bad request")

    # Built at run time, so that the traceback's source lines cannot show it.
    secret = "_".join(["tya", "local", "secret"])
    try:
        handle(f"Bearer {secret}")
    except ValueError:
        get_logger().exception("unhandled_error")

    output = stream.getvalue()
    assert "bad request" in output
    assert "handle" in output
    assert secret not in output
