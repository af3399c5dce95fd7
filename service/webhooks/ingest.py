"""Webhook ingestion in batches: concurrent webhooks share the work and a commit.

A webhook request hands its headers and raw body to the ingestor and waits. The
ingestor takes what has arrived as one batch and does everything per webhook in
a tight loop over it: it checks the signature, reads the body, and passes each
report to a writer. A writer takes an even share of what is queued for it (see
_even_share), applies it all in one transaction through
store.transitions.apply_reports, commits, and only then wakes each waiting
request with its own outcome: every answer still follows the durable write of
its data, while a commit (the expensive part: a WAL flush) is shared by the
whole batch. When the next batch is already queued, its read goes first and the
answers follow it (see _Answers). Running each step over the batch, rather than
a little of everything per request, is also what makes it cheap: under load,
code that each request runs for itself, between other requests' code, runs with
cold caches. Verifying and parsing a webhook took about 40 us that way, against
11 us in a loop.

Several writers may work at once, each with its own queue. A webhook goes to the
writer its training hashes to, so one training's webhooks are applied by one
writer, in the order they arrived, and writers never wait for each other's row
locks (which would make them take turns); batches also lock trainings in id order,
so even a report reaching two writers cannot make them wait in a cycle.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from pydantic import ValidationError

from .. import metrics
from ..domain.ids import is_training_id
from ..domain.text import first_unstorable, json_loads, scrub
from ..errors import InvalidRequest
from ..logs import get_logger
from ..replicate.models import Training
from ..store.pool import DATABASE_UNAVAILABLE
from ..store.trainings import Outcome, Policy, Report
from ..store.transitions import Item, WriteConflict, apply_reports, read_batch
from .verify import WebhookRejected, WebhookVerifier

log = get_logger()

MAX_BATCH = 128
# Tries of the lock-free write before falling back to row locks.
OPTIMISTIC_ATTEMPTS = 3
# How often waiting requests are checked against their deadline, in seconds.
DEADLINE_CHECK = 0.25
# The longest a committed batch's answers wait for the next batch's read (see
# _Answers), in seconds: many times that read under load, and far below any
# sender's patience.
HOLD_ANSWERS = 0.005


@dataclass(frozen=True, slots=True)
class Delivery:
    """A webhook as it arrived: not yet verified, nor read."""

    headers: Mapping[str, str]
    body: bytes
    # The Tuneyard training its URL names, as given (checked when it is read).
    training_id: str | None
    verifier: WebhookVerifier


_T = TypeVar("_T")
_Arrived = tuple[Delivery, "asyncio.Future[Outcome]"]
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
        self._arrived: asyncio.Queue[_Arrived] = asyncio.Queue()
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
            asyncio.create_task(self._read_arrivals(), name="webhook-reader")
        )
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

    async def receive(self, delivery: Delivery) -> Outcome:
        """Verify, read and apply one webhook; returns once it is committed with
        its batch.

        Raises WebhookRejected when it cannot be trusted and InvalidRequest
        when its body is not a training. Raises TimeoutError when recording it
        takes longer than `answer_within`: while the database does not answer,
        a webhook queued behind a stuck batch would otherwise wait for that
        batch's timeout and then its own. One that timed out before its batch
        began is dropped, since its sender retries it; one whose batch was
        already being written may still be recorded, and the sender's retry of
        it is then a duplicate.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Outcome] = loop.create_future()
        self._arrived.put_nowait((delivery, done))
        self._deadlines.append((loop.time() + self.answer_within, done))
        return await done

    async def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        while True:
            await asyncio.sleep(DEADLINE_CHECK)
            now = loop.time()
            # Answered ones are dropped too: kept until their deadline, they
            # held seconds' worth of webhooks' outcomes under load. Answers
            # come about in arrival order, so few wait behind an unanswered one.
            while deadlines and (deadlines[0][1].done() or deadlines[0][0] <= now):
                _, done = deadlines.popleft()
                _fail(done, TimeoutError("the webhook was not recorded in time"))

    async def _read_arrivals(self) -> None:
        while True:
            arrived = await _next_batch(self._arrived)
            metrics.WEBHOOKS_RECEIVED.inc(len(arrived))
            verified = 0
            for delivery, done in arrived:
                if done.done():
                    continue  # answered 503 already; its sender sends it again
                try:
                    item = read_delivery(delivery)
                except WebhookRejected as exc:
                    metrics.WEBHOOKS_REJECTED.labels(exc.reason).inc()
                    _fail(done, exc)
                    continue
                except InvalidRequest as exc:
                    verified += 1
                    metrics.WEBHOOKS_REJECTED.labels("bad_body").inc()
                    _fail(done, exc)
                    continue
                except Exception:
                    log.exception("webhook_read_failed")
                    _fail(done, RuntimeError("webhook could not be read"))
                    continue
                verified += 1
                report = item.report
                key = report.replicate_id or item.training_id or report.webhook_id
                self._queues[hash(key) % len(self._queues)].put_nowait((item, done))
            metrics.WEBHOOKS_VERIFIED.inc(verified)

    async def _write_batches(self, queue: asyncio.Queue[_Waiting]) -> None:
        answers = _Answers()
        last = 0
        while True:
            if queue.empty():
                answers.give()  # no read to send first
            batch = await _next_batch(queue, functools.partial(_even_share, last=last))
            last = len(batch)
            # A report already answered 503 (its deadline passed while the
            # database was away) will be sent again; writing it now would only
            # make the reports queued behind it miss their own deadlines.
            batch = [waiting for waiting in batch if not waiting[1].done()]
            if batch:
                await self._write(batch, answers)

    async def _write(self, batch: list[_Waiting], answers: _Answers) -> None:
        try:
            outcomes = await self._apply([item for item, _ in batch], answers)
        except DATABASE_UNAVAILABLE as exc:
            answers.give()
            # Every request of the batch answers 503; the sender retries.
            for _, done in batch:
                _fail(done, exc)
            return
        except Exception:
            answers.give()
            if len(batch) == 1:
                log.exception("webhook_batch_failed")
                _fail(batch[0][1], RuntimeError("webhook could not be recorded"))
                return
            # Something in the batch is at fault; find it by writing each alone,
            # so one bad report cannot cost the others their answer.
            log.warning("webhook_batch_retried_alone", size=len(batch))
            for waiting in batch:
                await self._write([waiting], answers)
            return
        duplicates = unknown = 0
        for outcome in outcomes:
            if outcome.duplicate:
                duplicates += 1
            elif outcome.training is None:
                unknown += 1
        metrics.WEBHOOKS_DUPLICATE.inc(duplicates)
        metrics.WEBHOOKS_UNKNOWN.inc(unknown)
        answers.hold([done for _, done in batch], outcomes)

    async def _apply(self, items: list[Item], answers: _Answers) -> list[Outcome]:
        """Read, then write in one statement (two round trips, one commit). A
        conflict means another replica or code path changed a training between
        the two; the batch is applied again, in the end under row locks."""
        async with self.pool.acquire() as conn:
            for _ in range(OPTIMISTIC_ATTEMPTS):
                snapshot = await read_batch(conn, items, lock=False)
                answers.give()
                try:
                    return await apply_reports(
                        conn, items, policy=self.policy, lock=False, snapshot=snapshot
                    )
                except WriteConflict:
                    log.info("webhook_batch_conflict", size=len(items))
            async with conn.transaction():
                return await apply_reports(conn, items, policy=self.policy)


class _Answers:
    """A committed batch's outcomes, given to its waiting requests once the next
    batch's read has returned.

    Giving an answer wakes its request, whose response is then written: work on
    the event loop, a few dozen microseconds a request. Given at once, that work
    for the whole batch runs first and the next batch's read waits behind it,
    with the database idle; given after the read, it runs while the next batch
    is being written, when the loop would otherwise wait for the database. In
    bench/compare.py this answered more webhooks a second in every round (a
    median of 1.06x the floor against 0.91x).

    Every answer still follows its batch's commit, and a timer gives the answers
    after HOLD_ANSWERS however long the read takes.
    """

    def __init__(self) -> None:
        self._held: list[tuple[asyncio.Future[Outcome], Outcome]] = []
        self._timer: asyncio.TimerHandle | None = None

    def hold(
        self, waiting: list[asyncio.Future[Outcome]], outcomes: list[Outcome]
    ) -> None:
        self.give()
        self._held = list(zip(waiting, outcomes, strict=True))
        self._timer = asyncio.get_running_loop().call_later(HOLD_ANSWERS, self.give)

    def give(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, []
        for done, outcome in held:
            # A request whose deadline passed was answered 503 already.
            if not done.done():
                done.set_result(outcome)


def _even_share(waiting: int, last: int) -> int:
    """How many of the `waiting` reports the next batch takes, the batch before
    it having taken `last`.

    Under load the requests waiting on a writer fall into two groups that take
    turns: one is written while the other's responses are sent and the next
    webhooks arrive. Taking everything queued let the groups drift apart
    (batches of 25 and 7 in turn), and while the big batch was written the loop
    had only the small group's work to do, idle a fifth of the time. Taking half
    of what waits, counting the batch just written, evens them out (16 and 16),
    so each write overlaps a like amount of other work; in bench/compare.py the
    loop was idle half as much and answered more webhooks a second. Nothing is
    left behind for long: what stays queued is taken by the next batch.
    """
    return min(MAX_BATCH, waiting, -(-(waiting + last) // 2))


async def _next_batch(
    queue: asyncio.Queue[_T], share: Callable[[int], int] | None = None
) -> list[_T]:
    """Wait for one entry, then take more of what is queued: all of it, or the
    `share` of it that the number waiting (the first entry included) gives."""
    batch = [await queue.get()]
    waiting = 1 + queue.qsize()
    take = waiting if share is None else share(waiting)
    batch.extend(queue.get_nowait() for _ in range(take - 1))
    return batch


def _fail(done: asyncio.Future[Outcome], exc: BaseException) -> None:
    # A request whose client went away has already given up waiting.
    if not done.done():
        done.set_exception(exc)


def read_delivery(delivery: Delivery) -> Item:
    """The report a webhook carries, once its signature checks out."""
    verified = delivery.verifier.verify(delivery.headers, delivery.body)
    training, text = _parse(delivery.body)
    training_id = delivery.training_id
    if training_id is not None and not is_training_id(training_id):
        training_id = None
    report = Report(
        source="webhook",
        training=training,
        webhook_id=verified.webhook_id,
        raw_body=text,
    )
    return Item(report, training_id)


# JSON escapes of the characters PostgreSQL cannot store: NUL, and surrogates
# (a lone one is invalid; a paired one is checked on the slow path too).
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(0000|[dD][89a-fA-F])")


# Numbers pydantic's JSON reader takes but JSON and PostgreSQL do not (see
# domain.text.json_loads); where these words appear, if only inside a string,
# the slow path tells which.
_NON_JSON_NUMBERS = (b"NaN", b"Infinity")


def _parse(body: bytes) -> tuple[Training, str]:
    """The training the body describes, and the body's text to keep.

    A body with no escape of an unstorable character and no word of
    _NON_JSON_NUMBERS (nearly every one) is parsed once, by pydantic. Raw UTF-8
    cannot hold an unstorable character, so its escapes are the only way in.
    """
    if not _UNSTORABLE_ESCAPE.search(body) and not any(
        word in body for word in _NON_JSON_NUMBERS
    ):
        try:
            return Training.model_validate_json(body), body.decode()
        except (ValidationError, UnicodeDecodeError):
            pass  # the slow path below says precisely what is wrong
    try:
        payload = json_loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the webhook body is not a training object")
    text = body.decode()
    if first_unstorable(payload) is not None:
        # Replicate's words (a training's logs, say) are kept even when they hold
        # a character PostgreSQL cannot: refusing them would only be repeated.
        payload = scrub(payload)
        text = json.dumps(payload)
    try:
        return Training.model_validate(payload), text
    except ValidationError:
        raise InvalidRequest(
            "the webhook body is not a training: it needs a string id and status"
        ) from None
