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

import bisect
import functools
import itertools
import math
from collections.abc import Iterator
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
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from .logs import get_logger
from .store.pool import DATABASE_UNAVAILABLE

log = get_logger()


class RequestMetrics:
    """Requests answered, by route template and status, and their durations.

    Kept as plain numbers and turned into Prometheus families only when
    /metrics is scraped. prometheus_client's own series take a lock on every
    update, and a histogram walks its buckets under it: under the webhook
    benchmark, Histogram.observe alone was 2.4% of the process's CPU. Every
    request is answered on the one event loop thread, so these numbers need no
    lock.
    """

    BUCKETS = Histogram.DEFAULT_BUCKETS

    def __init__(self) -> None:
        self._answered: dict[tuple[str, str, int], int] = {}
        # Per (method, route): the sum of durations, then one count per bucket
        # (not cumulative; summed when scraped).
        self._durations: dict[tuple[str, str], list[float]] = {}
        self._bounds = self.BUCKETS[:-1]  # the last is +Inf

    # Any token is a method to HTTP's parser: the others share one label, as
    # unmatched paths do, so a client cannot grow the series without bound.
    METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        if method not in self.METHODS:
            method = "other"
        key = (method, route, status)
        self._answered[key] = self._answered.get(key, 0) + 1
        timed = self._durations.get((method, route))
        if timed is None:
            timed = self._durations[method, route] = [0.0] * (len(self.BUCKETS) + 1)
        timed[0] += seconds
        # Buckets are upper bounds, inclusive: the first bound >= seconds.
        timed[1 + bisect.bisect_left(self._bounds, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        answered = CounterMetricFamily(
            "tuneyard_http_requests",
            "HTTP requests answered, by route template and status.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in list(self._answered.items()):
            answered.add_metric([method, route, str(status)], count)
        yield answered
        durations = HistogramMetricFamily(
            "tuneyard_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            labels=["method", "route"],
        )
        for (method, route), timed in list(self._durations.items()):
            cumulative = list(itertools.accumulate(timed[1:]))
            buckets = [
                (floatToGoString(bound), count)
                for bound, count in zip(self.BUCKETS, cumulative, strict=True)
            ]
            durations.add_metric([method, route], buckets, sum_value=timed[0])
        yield durations


REQUESTS = RequestMetrics()
REGISTRY.register(REQUESTS)
observe_request = REQUESTS.observe


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
    """The series counting moves to `status` reported by `source`, looked up
    once: looking a labelled series up takes a lock each time."""
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
