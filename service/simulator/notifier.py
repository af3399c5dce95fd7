"""Which webhook messages a training's changes produce, and when they go out.

Replicate sends `start` once, `output` and `logs` at most once every 500 ms, and
`completed` at the terminal status; with no `webhook_events_filter` it sends on
new output and at completion. A training's messages go out one after another, in
the order they were made, unless a fault reorders, delays, drops or duplicates
them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import ids
from .faults import Faults
from .shapes import training_json
from .state import Training
from .webhooks import Event, WebhookMessage, WebhookSender

DEFAULT_EVENTS: frozenset[Event] = frozenset({"output", "completed"})
THROTTLED_EVENTS: frozenset[Event] = frozenset({"output", "logs"})


@dataclass
class _Channel:
    """One training's outgoing messages."""

    queue: asyncio.Queue[tuple[WebhookMessage, str | None]] = field(
        default_factory=asyncio.Queue
    )
    worker: asyncio.Task[None] | None = None
    last_throttled: float = float("-inf")
    pending: asyncio.TimerHandle | None = None
    held: list[WebhookMessage] = field(default_factory=list)


class Notifier:
    def __init__(
        self,
        sender: WebhookSender,
        faults: Faults,
        throttle: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sender = sender
        self._faults = faults
        self._throttle = throttle
        self._clock = clock
        self._channels: dict[str, _Channel] = {}

    def notify(self, training: Training, event: Event) -> None:
        """Something happened to `training`; send what its filter asks for."""
        if training.webhook is None:
            return
        channel = self._channels.setdefault(training.id, _Channel())
        if event in _events_of(training):
            if event in THROTTLED_EVENTS:
                self._throttled(training, event, channel)
            else:
                if event == "completed" and channel.pending is not None:
                    # The terminal message carries every change the pending one
                    # would have.
                    channel.pending.cancel()
                    channel.pending = None
                self._emit(training, event, channel)
        if training.finished and channel.held:
            self._release_reversed(training, channel)

    async def close(self) -> None:
        """Stop every delivery in progress and forget the pending ones."""
        workers = [c.worker for c in self._channels.values() if c.worker is not None]
        for channel in self._channels.values():
            if channel.pending is not None:
                channel.pending.cancel()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._channels.clear()

    def _throttled(self, training: Training, event: Event, channel: _Channel) -> None:
        wait = channel.last_throttled + self._throttle - self._clock()
        if wait <= 0:
            channel.last_throttled = self._clock()
            self._emit(training, event, channel)
        elif channel.pending is None:
            loop = asyncio.get_running_loop()
            channel.pending = loop.call_later(
                wait, self._send_pending, training, event, channel
            )
        # Otherwise the pending message, built when it fires, carries this change.

    def _send_pending(
        self, training: Training, event: Event, channel: _Channel
    ) -> None:
        channel.pending = None
        channel.last_throttled = self._clock()
        self._emit(training, event, channel)

    def _emit(self, training: Training, event: Event, channel: _Channel) -> None:
        message = WebhookMessage(
            training_id=training.id,
            event=event,
            url=training.webhook or "",
            webhook_id=ids.webhook_id(),
            body=json.dumps(training_json(training)).encode(),
        )
        if training.fate.reorders_webhooks:
            channel.held.append(message)
            if training.finished:
                self._release_reversed(training, channel)
            return
        self._enqueue(channel, message, None)

    def _release_reversed(self, training: Training, channel: _Channel) -> None:
        # The reorder fault: everything held goes out newest first, so the
        # receiver sees `completed` before `start`.
        held, channel.held = channel.held, []
        for message in reversed(held):
            self._enqueue(channel, message, "reordered")

    def _enqueue(
        self, channel: _Channel, message: WebhookMessage, fault: str | None
    ) -> None:
        channel.queue.put_nowait((message, fault))
        if channel.worker is None or channel.worker.done():
            channel.worker = asyncio.create_task(self._drain(channel))

    async def _drain(self, channel: _Channel) -> None:
        while not channel.queue.empty():
            message, fault = channel.queue.get_nowait()
            await self._deliver(message, fault)

    async def _deliver(self, message: WebhookMessage, fault: str | None) -> None:
        delay = self._faults.webhook_delay()
        if delay > 0:
            await asyncio.sleep(delay)
            fault = fault or "delayed"
        if self._faults.drops_webhook():
            self._sender.record_dropped(message)
            return
        await self._sender.deliver(message, fault=fault)
        if self._faults.duplicates_webhook():
            await self._sender.send_once(message, 1, "duplicate")


def _events_of(training: Training) -> frozenset[Event] | set[str]:
    if training.webhook_events_filter is None:
        return DEFAULT_EVENTS
    return set(training.webhook_events_filter)
