"""Sending webhooks: signed per Standard Webhooks, one POST an attempt.

Only the terminal webhook is retried, as Replicate does: on a failed connection,
a timeout, or any answer outside 2xx (a redirect included, since Replicate does
not follow them), with exponential backoff from `retry_delay` for `retry_window`
seconds. Every resend keeps the message's `webhook-id` and is signed afresh with
a new `webhook-timestamp`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import aiohttp
from standardwebhooks import Webhook

from .ids import timestamp, utcnow

Event = Literal["start", "output", "logs", "completed"]
EVENTS: tuple[Event, ...] = ("start", "output", "logs", "completed")

DROPPED = "dropped by the webhook_drop_rate fault; never sent"


@dataclass(frozen=True)
class WebhookMessage:
    """One webhook: the training as it stood when the event happened."""

    training_id: str
    event: Event
    url: str
    webhook_id: str
    body: bytes

    @property
    def terminal(self) -> bool:
        return self.event == "completed"


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver a message, as the admin API lists it."""

    message: WebhookMessage
    attempt: int
    sent_at: datetime
    status_code: int | None
    error: str | None
    fault: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def to_json(self) -> dict[str, Any]:
        return {
            "training_id": self.message.training_id,
            "webhook_id": self.message.webhook_id,
            "event": self.message.event,
            "url": self.message.url,
            "attempt": self.attempt,
            "sent_at": timestamp(self.sent_at),
            "status_code": self.status_code,
            "error": self.error,
            "fault": self.fault,
        }


class DeliveryLog:
    """The latest attempts, oldest first; older ones fall off past `limit`."""

    def __init__(self, limit: int) -> None:
        self._entries: deque[Delivery] = deque(maxlen=limit)

    def record(self, delivery: Delivery) -> None:
        self._entries.append(delivery)

    def entries(self) -> list[Delivery]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()


class WebhookSender:
    """Signs and sends messages, retrying the terminal ones."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        secret: str,
        log: DeliveryLog,
        *,
        timeout: float,
        retry_delay: float,
        retry_window: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._signer = Webhook(secret)
        self._log = log
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry_delay = retry_delay
        self._retry_window = retry_window
        self._clock = clock
        self._sleep = sleep

    async def deliver(
        self, message: WebhookMessage, *, fault: str | None = None
    ) -> None:
        """Send `message`; a terminal one is retried until delivered or too late."""
        first_sent = self._clock()
        delay = self._retry_delay
        attempt = 1
        while not await self.send_once(message, attempt, fault) and message.terminal:
            if self._clock() + delay - first_sent > self._retry_window:
                return
            await self._sleep(delay)
            delay *= 2
            attempt += 1

    async def send_once(
        self, message: WebhookMessage, attempt: int, fault: str | None = None
    ) -> bool:
        """One signed POST; records it and says whether it was answered 2xx."""
        sent_at = utcnow()
        status_code: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                message.url,
                data=message.body,
                headers=self.signed_headers(message, sent_at),
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                status_code = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        delivery = Delivery(message, attempt, sent_at, status_code, error, fault)
        self._log.record(delivery)
        return delivery.delivered

    def record_dropped(self, message: WebhookMessage) -> None:
        self._log.record(Delivery(message, 0, utcnow(), None, DROPPED, "dropped"))

    def signed_headers(
        self, message: WebhookMessage, sent_at: datetime
    ) -> dict[str, str]:
        signature = self._signer.sign(
            message.webhook_id, sent_at, message.body.decode()
        )
        return {
            "Content-Type": "application/json",
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
