"""Live streams of a training's events, whichever replica records them.

Recording an event NOTIFYs its training id on store.trainings.EVENTS_CHANNEL. Each
process holds one connection that LISTENs there while a stream is open in it, and
wakes the streams open for that training; a woken stream reads what is new from
the database. With no stream open it does not listen: every webhook batch
notifies once per training, and a replica nobody streams from would only read
and drop those notifications.
The database stays the only source of events: a notification only says "look",
so one that is lost (say, while the connection is re-established) costs nothing
but a look, and every stream looks again after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict

import asyncpg

from .logs import get_logger
from .store.pool import CONNECT_TIMEOUT, DATABASE_UNAVAILABLE
from .store.trainings import EVENTS_CHANNEL

log = get_logger()


class Subscription:
    """One open stream's interest in one training."""

    def __init__(self, training_id: str) -> None:
        self.training_id = training_id
        self.changed = asyncio.Event()
        self.closed = False

    def wake(self) -> None:
        self.changed.set()

    async def wait(self, seconds: float) -> bool:
        """Wait for news; False when `seconds` passed without any."""
        try:
            async with asyncio.timeout(seconds):
                await self.changed.wait()
        except TimeoutError:
            return False
        self.changed.clear()
        return True


class EventHub:
    """This process's listener on the events channel and the streams it feeds."""

    def __init__(self, dsn: str, *, reconnect_max: float = 5.0) -> None:
        self._dsn = dsn
        self._reconnect_max = reconnect_max
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        # Set when the listener should look again: the first stream opened, the
        # last one closed, or its connection was lost.
        self._stirred = asyncio.Event()
        self.listening = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="event-hub")

    async def stop(self) -> None:
        self.close_streams()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, training_id: str) -> Subscription:
        """A stream's interest in a training. It is woken once the hub listens
        (not at once if this is the process's first stream), so a stream reads
        the database once more after anything it could have missed."""
        subscription = Subscription(training_id)
        if not self._subscriptions:
            self._stirred.set()
        self._subscriptions[training_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscriptions.get(subscription.training_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscriptions[subscription.training_id]
                if not self._subscriptions:
                    self._stirred.set()

    def close_streams(self) -> None:
        """Ask every open stream to end: the process is shutting down, and a stream
        left open would hold the graceful shutdown for its whole timeout."""
        for subscribers in self._subscriptions.values():
            for subscription in subscribers:
                subscription.closed = True
                subscription.wake()

    def _notified(self, *args: object) -> None:
        training_id = args[-1]
        for subscription in self._subscriptions.get(str(training_id), ()):
            subscription.wake()

    def _wake_all(self) -> None:
        for subscribers in self._subscriptions.values():
            for subscription in subscribers:
                subscription.wake()

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
                lost = asyncio.Event()

                def on_lost(_: object, lost: asyncio.Event = lost) -> None:
                    lost.set()
                    self._stirred.set()

                conn.add_termination_listener(on_lost)
                delay = 0.2
                await self._follow_streams(conn, lost)
                log.warning("event_hub_disconnected")
            except DATABASE_UNAVAILABLE as exc:
                log.debug("event_hub_connect_failed", error=str(exc))
            except Exception:
                # Whatever else goes wrong (a database renamed, a bug), streams
                # must not lose their feed for good: log it and connect again.
                log.exception("event_hub_failed")
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    await conn.close(timeout=1)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, self._reconnect_max)

    async def _follow_streams(
        self, conn: asyncpg.Connection, lost: asyncio.Event
    ) -> None:
        """LISTEN while a stream is open, until the connection is lost."""
        while not lost.is_set() and not conn.is_closed():
            # Cleared before looking, so a change made while this waits below
            # (or while it runs LISTEN) is seen on the next turn.
            self._stirred.clear()
            wanted = bool(self._subscriptions)
            if wanted and not self.listening:
                await conn.add_listener(EVENTS_CHANNEL, self._notified)
                self.listening = True
                # Anything recorded before this listened is found by looking again.
                self._wake_all()
            elif not wanted and self.listening:
                await conn.remove_listener(EVENTS_CHANNEL, self._notified)
                self.listening = False
            else:
                # Woken early by a change; the timeout only bounds how long a
                # connection that died without a word goes unnoticed.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._reconnect_max):
                        await self._stirred.wait()
