"""Prometheus metrics, served at /metrics.

Counters and histograms are per process; Prometheus scrapes every replica and sums
them. The gauges read from the database (live trainings, queue depths) describe
the shared state, so every replica reports the same values; aggregate them with
max(), not sum().

Finished trainings are counted by tuneyard_training_transitions_total rather than
a gauge: counting every finished training on each scrape would read the whole
table.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .logs import get_logger
from .store.pool import DATABASE_UNAVAILABLE

log = get_logger()

HTTP_REQUESTS = Counter(
    "tuneyard_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "tuneyard_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency."""
    counted, timed = _request_series(method, route, status)
    counted.inc()
    timed.observe(seconds)


@functools.lru_cache(maxsize=4096)
def _request_series(method: str, route: str, status: int) -> tuple[Any, Any]:
    # Looking a labelled series up takes a lock each time; every request would
    # pay it twice. Routes are templates and unmatched paths share one label,
    # so the combinations are few.
    return (
        HTTP_REQUESTS.labels(method, route, status),
        HTTP_DURATION.labels(method, route),
    )


WEBHOOKS_RECEIVED = Counter(
    "tuneyard_webhooks_received", "Webhooks from Replicate received."
)
WEBHOOKS_VERIFIED = Counter(
    "tuneyard_webhooks_verified", "Webhooks whose signature and timestamp checked out."
)
WEBHOOKS_REJECTED = Counter(
    "tuneyard_webhooks_rejected", "Webhooks refused, by reason.", ["reason"]
)
WEBHOOKS_DUPLICATE = Counter(
    "tuneyard_webhooks_duplicates", "Webhooks whose webhook-id was already recorded."
)
WEBHOOKS_UNKNOWN = Counter(
    "tuneyard_webhooks_unknown_training",
    "Webhooks for trainings Tuneyard does not know.",
)

TRANSITIONS = Counter(
    "tuneyard_training_transitions",
    "Trainings moving to a status, by what reported it.",
    ["status", "source"],
)


@functools.lru_cache(maxsize=256)
def transitions(status: str, source: str) -> Any:
    """The series counting moves to `status` reported by `source` (see
    _request_series on why it is looked up once)."""
    return TRANSITIONS.labels(status, source)


TRAININGS_LIVE = Gauge(
    "tuneyard_trainings", "Trainings not yet finished, by status.", ["status"]
)
QUEUE_DEPTH = Gauge(
    "tuneyard_queue_depth",
    "Work waiting: queued trainings, unsettled creates, pending callbacks.",
    ["queue"],
)

SUBMISSIONS = Counter(
    "tuneyard_submissions",
    "Submission attempts by outcome: submitted, refused, deferred, unanswered, "
    "found (an unanswered create was found), absent (shown never to have arrived).",
    ["outcome"],
)
RECONCILER_ACTIONS = Counter(
    "tuneyard_reconciler_actions",
    "Reconciler polls and cancels, by whether they moved the training.",
    ["action", "outcome"],
)
NOTIFICATIONS = Counter(
    "tuneyard_notifications",
    "Callback delivery attempts by outcome: delivered, retry, failed.",
    ["outcome"],
)

REPLICATE_REQUESTS = Counter(
    "tuneyard_replicate_requests",
    "Calls to Replicate's API, by endpoint and HTTP status (or error).",
    ["endpoint", "status"],
)
REPLICATE_DURATION = Histogram(
    "tuneyard_replicate_request_duration_seconds",
    "Time for one call to Replicate's API, by endpoint.",
    ["endpoint"],
)

# One query for every gauge that reads the shared state; each count is served by
# a partial index, so a scrape costs the same however many trainings finished.
SHARED_STATE = """
SELECT
    (SELECT count(*) FROM trainings WHERE status = 'queued') AS queued,
    (SELECT count(*) FROM trainings
     WHERE status = 'queued' AND create_sent_at IS NOT NULL
       AND replicate_id IS NULL) AS unsettled,
    (SELECT count(*) FROM trainings WHERE status = 'submitted') AS submitted,
    (SELECT count(*) FROM trainings WHERE status = 'running') AS running,
    (SELECT count(*) FROM notifications WHERE status = 'pending') AS notifications
"""


async def render(pool: asyncpg.Pool) -> web.Response:
    """The metrics in Prometheus's text format, shared-state gauges refreshed."""
    try:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(SHARED_STATE)
        values = dict(row)
    except DATABASE_UNAVAILABLE as exc:
        # The process metrics still help when the database is down; the shared
        # gauges say "unknown" rather than repeat an old value.
        log.warning("metrics_database_unavailable", error=str(exc))
        values = dict.fromkeys(
            ("queued", "unsettled", "submitted", "running", "notifications"), math.nan
        )
    for status in ("queued", "submitted", "running"):
        TRAININGS_LIVE.labels(status).set(values[status])
    QUEUE_DEPTH.labels("queued").set(values["queued"])
    QUEUE_DEPTH.labels("unsettled").set(values["unsettled"])
    QUEUE_DEPTH.labels("notifications_pending").set(values["notifications"])
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
