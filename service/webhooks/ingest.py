"""Group commit for webhooks: concurrent ones share a transaction.

Each webhook request puts its report on a queue and waits. A writer takes what is
queued (up to MAX_BATCH), applies it all in one transaction through
store.transitions.apply_reports, commits, and only then wakes each waiting request
with its own outcome: every answer still follows the durable write of its data,
while a commit (the expensive part: a WAL flush) is shared by the whole batch.

Several writers work at once, each with its own queue. A webhook goes to the
writer its training hashes to, so one training's webhooks are applied by one
writer, in the order they arrived, and writers never wait for each other's row
locks (which would make them take turns); batches also lock trainings in id order,
so even a report reaching two writers cannot make them wait in a cycle.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import asyncpg

from ..logs import get_logger
from ..store.pool import DATABASE_UNAVAILABLE
from ..store.trainings import Outcome, Policy
from ..store.transitions import Item, WriteConflict, apply_reports

log = get_logger()

MAX_BATCH = 128
# Tries of the lock-free write before falling back to row locks.
OPTIMISTIC_ATTEMPTS = 3
# How often waiting requests are checked against their deadline, in seconds.
DEADLINE_CHECK = 0.25

_Waiting = tuple[Item, "asyncio.Future[Outcome]"]


class WebhookIngestor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: Policy,
        *,
        writers: int,
        answer_within: float,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.answer_within = answer_within
        self._queues: list[asyncio.Queue[_Waiting]] = [
            asyncio.Queue() for _ in range(writers)
        ]
        self._writers: list[asyncio.Task[None]] = []
        # Each waiting request's deadline, in arrival order (so in deadline
        # order): one watchdog enforces them all, where a timer per request
        # would cost every webhook a few percent more.
        self._deadlines: collections.deque[tuple[float, asyncio.Future[Outcome]]] = (
            collections.deque()
        )

    def start(self) -> None:
        self._writers = [
            asyncio.create_task(self._write_batches(queue), name=f"webhook-writer-{n}")
            for n, queue in enumerate(self._queues)
        ]
        self._writers.append(
            asyncio.create_task(self._expire(), name="webhook-deadlines")
        )

    async def stop(self) -> None:
        """Called once no request is in flight, so nothing is left waiting."""
        for task in self._writers:
            task.cancel()
        for task in self._writers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def apply(self, item: Item) -> Outcome:
        """Apply one report; returns once it is committed with its batch.

        Raises TimeoutError when that takes longer than `answer_within`: while
        the database does not answer, a report queued behind a stuck batch would
        otherwise wait for that batch's timeout and then its own. A report that
        timed out before its batch began is dropped, since its sender retries
        it; one whose batch was already being written may still be recorded, and
        the sender's retry of it is then a duplicate.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Outcome] = loop.create_future()
        key = item.report.replicate_id or item.training_id or item.report.webhook_id
        self._queues[hash(key) % len(self._queues)].put_nowait((item, done))
        self._deadlines.append((loop.time() + self.answer_within, done))
        return await done

    async def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(DEADLINE_CHECK)
            now = loop.time()
            while self._deadlines and self._deadlines[0][0] <= now:
                _, done = self._deadlines.popleft()
                _fail(done, TimeoutError("the webhook was not recorded in time"))

    async def _write_batches(self, queue: asyncio.Queue[_Waiting]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            # A report already answered 503 (its deadline passed while the
            # database was away) will be sent again; writing it now would only
            # make the reports queued behind it miss their own deadlines.
            batch = [waiting for waiting in batch if not waiting[1].done()]
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            outcomes = await self._apply([item for item, _ in batch])
        except DATABASE_UNAVAILABLE as exc:
            # Every request of the batch answers 503; the sender retries.
            for _, done in batch:
                _fail(done, exc)
            return
        except Exception:
            if len(batch) == 1:
                log.exception("webhook_batch_failed")
                _fail(batch[0][1], RuntimeError("webhook could not be recorded"))
                return
            # Something in the batch is at fault; find it by writing each alone,
            # so one bad report cannot cost the others their answer.
            log.warning("webhook_batch_retried_alone", size=len(batch))
            for waiting in batch:
                await self._write([waiting])
            return
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if not done.done():
                done.set_result(outcome)

    async def _apply(self, items: list[Item]) -> list[Outcome]:
        """Read, then write in one statement (two round trips, one commit). A
        conflict means another replica or code path changed a training between
        the two; the batch is applied again, in the end under row locks."""
        async with self.pool.acquire() as conn:
            for _ in range(OPTIMISTIC_ATTEMPTS):
                try:
                    return await apply_reports(
                        conn, items, policy=self.policy, lock=False
                    )
                except WriteConflict:
                    log.info("webhook_batch_conflict", size=len(items))
            async with conn.transaction():
                return await apply_reports(conn, items, policy=self.policy)


def _fail(done: asyncio.Future[Outcome], exc: BaseException) -> None:
    # A request whose client went away has already given up waiting.
    if not done.done():
        done.set_exception(exc)
