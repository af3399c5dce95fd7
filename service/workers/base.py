"""The loop every worker shares: claim due work, handle it, sleep until more is due.

Work lives in PostgreSQL, claimed with FOR UPDATE SKIP LOCKED, so any number of
replicas share it without handing any item to two at once. A worker sleeps until
its next item is due or its poll interval passes, whichever is first; a NOTIFY on
its channel wakes it at once, so new work does not wait for the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from abc import ABC, abstractmethod
from datetime import UTC, datetime

import asyncpg
from structlog.contextvars import bound_contextvars

from ..logs import get_logger
from ..store import trainings
from ..store.pool import CONNECT_TIMEOUT, DATABASE_UNAVAILABLE

log = get_logger()


class Worker(ABC):
    name: str
    # The NOTIFY channel that means "new work"; None to rely on polling alone.
    channel: str | None = None

    def __init__(
        self, pool: asyncpg.Pool, dsn: str, *, poll_interval: float, concurrency: int
    ) -> None:
        self.pool = pool
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self._dsn = dsn
        self._wake = asyncio.Event()
        self._stopping = False
        self._busy: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None

    @abstractmethod
    async def claim(self, limit: int) -> list[object]:
        """Claim up to `limit` due items."""

    @abstractmethod
    async def handle(self, item: object) -> None:
        """Work on one claimed item; exceptions are logged, never fatal."""

    @abstractmethod
    async def seconds_until_due(self) -> float | None:
        """How long until the next item falls due, if any is waiting."""

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name=self.name)
        if self.channel is not None:
            self._listen_task = asyncio.create_task(
                self._listen(), name=f"{self.name}-listen"
            )
        log.info("worker_started", worker=self.name)

    def wake(self) -> None:
        self._wake.set()

    def stop_claiming(self) -> None:
        """Take no new work; items in hand go on. Called as shutdown begins, so
        nothing new starts while requests in flight finish."""
        self._stopping = True
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Claim nothing more; give items in hand `grace` seconds, then cancel them."""
        self.stop_claiming()
        for task in (self._listen_task, self._loop_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._busy:
            _, pending = await asyncio.wait(self._busy, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        log.info("worker_stopped", worker=self.name)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                delay = await self._tick()
                failures = 0
            except DATABASE_UNAVAILABLE as exc:
                failures += 1
                delay = min(self.poll_interval, 0.5 * 2**failures)
                log.warning(
                    "worker_database_unavailable", worker=self.name, error=str(exc)
                )
            except Exception:
                failures += 1
                delay = self.poll_interval
                log.exception("worker_tick_failed", worker=self.name)
            await self._sleep(delay)

    async def _tick(self) -> float:
        free = self.concurrency - len(self._busy)
        if free > 0:
            for item in await self.claim(free):
                task = asyncio.create_task(self._handle(item))
                self._busy.add(task)
                task.add_done_callback(self._done)
        if len(self._busy) >= self.concurrency:
            # Full: a finishing item wakes the loop.
            return self.poll_interval
        due = await self.seconds_until_due()
        if due is None:
            return self.poll_interval
        return min(max(due, 0.0), self.poll_interval)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._busy.discard(task)
        self._wake.set()

    async def _handle(self, item: object) -> None:
        with bound_contextvars(worker=self.name):
            try:
                await self.handle(item)
            except asyncio.CancelledError:
                raise
            except DATABASE_UNAVAILABLE as exc:
                # The claim's lease runs out and the item is claimed again.
                log.warning("worker_item_deferred", error=str(exc))
            except Exception:
                log.exception("worker_item_failed")

    async def _sleep(self, delay: float) -> None:
        if delay <= 0 or self._stopping:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
        self._wake.clear()

    async def _listen(self) -> None:
        """Hold a connection that LISTENs on the channel; reconnect if it drops."""
        assert self.channel is not None
        delay = 0.5
        while not self._stopping:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _, event=closed: event.set())
                await conn.add_listener(self.channel, lambda *_: self._wake.set())
                delay = 0.5
                # Work queued while the listener was down is found by this tick.
                self._wake.set()
                while not closed.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.poll_interval):
                            await closed.wait()
            except DATABASE_UNAVAILABLE as exc:
                log.debug("worker_listen_failed", worker=self.name, error=str(exc))
            except Exception:
                # Polling still finds the work; keep trying to listen as well.
                log.exception("worker_listen_error", worker=self.name)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close(timeout=1)
            if not self._stopping:
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, self.poll_interval)


class TrainingWorker(Worker):
    """A worker over one of the trainings queues (see store.trainings.Queue)."""

    queue: trainings.Queue

    async def claim(self, limit: int) -> list[object]:
        async with self.pool.acquire() as conn:
            return list(await trainings.claim(conn, self.queue, limit, self.lease))

    async def seconds_until_due(self) -> float | None:
        async with self.pool.acquire() as conn:
            due = await trainings.next_due(conn, self.queue)
        if due is None:
            return None
        return (due - datetime.now(UTC)).total_seconds()

    @property
    @abstractmethod
    def lease(self) -> float:
        """How long a claim keeps other workers off a training."""
