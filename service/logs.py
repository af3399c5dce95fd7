"""Structured logging: JSON lines for machines, readable lines on a terminal.

Tuneyard's own events go through structlog's fast native logger. Libraries that use
the standard `logging` module (aiohttp, asyncio, asyncpg) are routed through the
same processors, so every line carries the same fields and format.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from .config import LogFormat, LogLevel

# Keys whose values are never written, whatever the caller passed: defence in depth
# behind the rule that code does not log secrets in the first place.
_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|authorization|api_key|dsn|database_url)",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def _redact_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key in event:
        if _SECRET_KEY.search(key):
            event[key] = REDACTED
    return event


def configure_logging(
    level: LogLevel = "info", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Set up structlog and the standard library's logging to write to `stream`."""
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    numeric_level = logging.getLevelNamesMapping()[level.upper()]

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer: Processor
    # Tracebacks without the frames' local variables: those hold request
    # bodies, headers and tokens, which must never reach a log.
    if as_json:
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(),
            exception_formatter=structlog.dev.plain_traceback,
        )

    global _generation
    _generation += 1
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # aiohttp's own access log is replaced by one structured line per request.
    logging.getLogger("aiohttp.access").disabled = True


def get_logger(**initial: Any) -> structlog.typing.FilteringBoundLogger:
    return cast(structlog.typing.FilteringBoundLogger, _Logger(initial))


# Bumped by configure_logging, so loggers bound before it bind again.
_generation = 0


class _Logger:
    """A logger bound once per configure_logging.

    structlog's lazy proxy binds a new logger, and opens a new output writer
    with a lock of its own, on every call, even one its level filters out: on
    the webhook path that was a few percent of all the work.
    """

    __slots__ = ("_bound", "_generation", "_initial")

    def __init__(self, initial: dict[str, Any]) -> None:
        self._initial = initial
        self._generation = -1
        self._bound: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._generation != _generation:
            self._bound = structlog.get_logger(**self._initial).bind()
            self._generation = _generation
        return getattr(self._bound, name)
