"""The notifier: delivers the outbox of signed callbacks to callers.

Each event is POSTed to its callback URL, signed with every TUNEYARD_WEBHOOK_SECRET,
under the same webhook-id on every attempt. Any 2xx delivers it. Otherwise it is
retried over TUNEYARD_CALLBACK_RETRY_SCHEDULE (with jitter), waiting as long as a
429 or 503 asks with Retry-After; a 410 Gone stops at once. Redirects are not
followed. After the last attempt the event is marked failed, and can be
redelivered through the API.

A training's events go out one at a time and in order (see
store.notifications.CLAIM), and replicas share the outbox without sending one
event twice at once.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import aiohttp
import asyncpg
from structlog.contextvars import bind_contextvars

from .. import metrics
from ..config import Settings
from ..logs import get_logger
from ..retry import retry_after_seconds
from ..store import notifications as store
from ..store.notifications import Attempt, NotificationRecord
from ..webhooks.sign import WebhookSigner
from .base import Worker

log = get_logger()

# Retry-After is honoured up to this long; a receiver asking for more is asked
# again after a day rather than never.
MAX_RETRY_AFTER = 86400.0
# A receiver's answer body is not read beyond this: only its status matters.
MAX_ANSWER_BYTES = 64 * 1024


class Notifier(Worker):
    name = "notifier"
    channel = store.CHANNEL

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        http: aiohttp.ClientSession,
        settings: Settings,
    ) -> None:
        super().__init__(
            pool,
            dsn,
            poll_interval=settings.worker_poll_interval,
            concurrency=settings.submit_concurrency,
        )
        self.http = http
        self.signer = WebhookSigner(settings.callback_secrets)
        self.schedule = settings.retry_delays
        self.timeout = aiohttp.ClientTimeout(total=settings.callback_timeout)
        # Longer than an attempt can take, so a claim is not taken over mid-attempt.
        self.lease = settings.callback_timeout * 2 + 5

    async def claim(self, limit: int) -> list[object]:
        async with self.pool.acquire() as conn:
            return list(await store.claim(conn, limit, self.lease))

    async def seconds_until_due(self) -> float | None:
        async with self.pool.acquire() as conn:
            due = await store.next_due(conn)
        if due is None:
            return None
        return (due - datetime.now(UTC)).total_seconds()

    async def handle(self, item: object) -> None:
        assert isinstance(item, NotificationRecord)
        notification = item
        bind_contextvars(
            training_id=notification.training_id, notification_id=notification.id
        )
        attempt, retry_after = await self._attempt(notification)
        status, retry_in = self._outcome(notification, attempt, retry_after)

        async with self.pool.acquire() as conn:
            recorded = await store.record_attempt(
                conn,
                notification,
                attempt,
                status=status,
                retry_in=retry_in,
            )
        if not recorded:
            log.warning("notification_claim_lost")
            return
        metrics.NOTIFICATIONS.labels(status if status != "pending" else "retry").inc()
        fields = {
            "attempt": attempt.number,
            "status_code": attempt.status_code,
            "type": notification.type,
        }
        if status == "delivered":
            log.info("notification_delivered", **fields)
        elif status == "failed":
            log.warning("notification_failed", error=attempt.error, **fields)
        else:
            log.info(
                "notification_retry",
                error=attempt.error,
                retry_in=round(retry_in, 1),
                **fields,
            )

    async def _attempt(
        self, notification: NotificationRecord
    ) -> tuple[Attempt, float | None]:
        number = notification.attempts + 1
        body = notification.body()
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        status_code: int | None = None
        retry_after: float | None = None
        error: str | None = None
        try:
            async with self.http.post(
                notification.callback_url,
                data=body,
                headers=self.signer.headers(notification.id, body),
                timeout=self.timeout,
                allow_redirects=False,
            ) as response:
                status_code = response.status
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                await response.content.read(MAX_ANSWER_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if status_code is not None and not 200 <= status_code < 300:
            error = f"answered HTTP {status_code}"
        duration_ms = round((time.perf_counter() - started) * 1000)
        return Attempt(number, started_at, duration_ms, status_code, error), retry_after

    def _outcome(
        self,
        notification: NotificationRecord,
        attempt: Attempt,
        retry_after: float | None,
    ) -> tuple[str, float]:
        """The status after this attempt, and when to try again if pending."""
        if attempt.status_code is not None and 200 <= attempt.status_code < 300:
            return "delivered", 0.0
        if attempt.status_code == 410:
            # Gone: the receiver says this URL will never take events again.
            return "failed", 0.0
        if notification.retry_index >= len(self.schedule):
            return "failed", 0.0
        delay = self.schedule[notification.retry_index] * random.uniform(0.8, 1.2)
        if attempt.status_code in (429, 503) and retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER)
        return "pending", delay
