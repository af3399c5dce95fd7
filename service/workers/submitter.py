"""The submitter: takes queued trainings to Replicate, each exactly once.

For each claimed training:
1. A create that was sent before and never answered (timeout, lost connection,
   crash) is settled first: a webhook naming the training, or Replicate's list of
   recent trainings, shows whether it arrived. Only once it is shown absent may
   another create be sent, so one training never becomes two paid ones.
2. The destination model is made to exist (destinations.ensure), once per
   destination.
3. Once the pace of creates allows it, the create is marked as sent under the
   worker's claim, committed, and sent at once, in one attempt. A worker whose
   claim has lapsed (another took the training up) sends nothing.
Transient failures are retried with backoff; Replicate refusing the request fails
the training with Replicate's own message.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from structlog.contextvars import bind_contextvars

from .. import destinations, metrics
from ..config import Settings
from ..domain.names import VersionRef, parse_version
from ..domain.status import Status
from ..logs import get_logger
from ..replicate.client import ReplicateClient
from ..replicate.errors import (
    CreateOutcomeUnknown,
    ReplicateError,
    ReplicateNotFound,
    ReplicateRefused,
    ReplicateUnavailable,
)
from ..replicate.models import Training
from ..store import trainings as store
from ..store import transitions
from ..store.trainings import Policy, Report, TrainingRecord
from .base import TrainingWorker

log = get_logger()

# Replicate's clock and ours differ; a training it lists as created this long
# before our create was sent can still be ours.
CLOCK_SKEW = timedelta(minutes=5)
# Right after a model is created, a training create can briefly answer 404 for it
# (read-after-write lag); so many such answers are retried before giving up.
DESTINATION_LAG_RETRIES = 5
# Transient failures are retried with exponential backoff up to this delay.
MAX_BACKOFF = 300.0


class Submitter(TrainingWorker):
    name = "submitter"
    channel = store.QUEUED_CHANNEL
    queue = store.Queue.QUEUED

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        client: ReplicateClient,
        settings: Settings,
    ) -> None:
        super().__init__(
            pool,
            dsn,
            poll_interval=settings.worker_poll_interval,
            concurrency=settings.submit_concurrency,
        )
        self.client = client
        self.settings = settings
        # A claim outlasts a create's timeout, so a crashed replica's trainings are
        # taken up within a couple of minutes. Marking a create sent renews it,
        # so no other worker takes the training up while a create is out. Other
        # steps that run longer (slow retries of reads) may overlap another
        # worker's, which the claim token and the status checks make harmless.
        self._lease = settings.replicate_timeout * 3
        self.policy = Policy.from_settings(settings)

    @property
    def lease(self) -> float:
        return self._lease

    async def handle(self, item: object) -> None:
        assert isinstance(item, TrainingRecord)
        record = item
        bind_contextvars(training_id=record.id)

        if record.is_unsettled:
            settled = await self._settle(record)
            if settled is not True:
                return
        if record.cancel_requested_at is not None:
            await self._apply(
                record, Report(source="submitter", status=Status.CANCELED)
            )
            return

        try:
            await destinations.ensure(
                self.pool,
                self.client,
                self.settings,
                record.destination,
                wanted=record.destination_settings,
            )
        except ReplicateRefused as exc:
            await self._fail(record, f"destination {record.destination}: {exc.detail}")
            return
        except ReplicateError as exc:
            await self._retry_later(record, exc, create_absent=True)
            return

        await self._create(record)

    # Steps -------------------------------------------------------------------

    async def _settle(self, record: TrainingRecord) -> bool | None:
        """Find out whether an unanswered create reached Replicate.

        True: it did not, and a create may be sent. None: it did and was adopted,
        or it cannot be told yet (the training is rescheduled).
        """
        assert record.create_sent_at is not None
        try:
            found = await self._find_on_replicate(record)
        except ReplicateError as exc:
            await self._retry_later(record, exc, create_absent=False)
            return None
        if found is not None:
            log.info("training_create_found", replicate_id=found.id)
            metrics.SUBMISSIONS.labels("found").inc()
            outcome = await self._apply(
                record, Report(source="submitter", training=found)
            )
            if outcome is not None and record.cancel_requested_at is not None:
                await self._cancel_on_replicate(found.id, record)
            return None

        waited = datetime.now(UTC) - record.create_sent_at
        window = timedelta(seconds=self.settings.settle_window)
        if waited < window:
            # Replicate lists a new training after a moment, and its start webhook
            # names ours; give both the window before concluding it is absent.
            async with self.pool.acquire() as conn:
                await store.reschedule(
                    conn,
                    record.id,
                    record.claim_token,
                    delay=(window - waited).total_seconds(),
                    error="waiting to learn whether the last create reached Replicate",
                    create_absent=False,
                )
            return None
        log.info("training_create_absent", waited_s=round(waited.total_seconds(), 1))
        metrics.SUBMISSIONS.labels("absent").inc()
        return True

    async def _find_on_replicate(self, record: TrainingRecord) -> Training | None:
        """The training among Replicate's recent ones that this create made."""
        assert record.create_sent_at is not None
        trainer = parse_version(record.trainer)
        oldest = record.create_sent_at - CLOCK_SKEW
        candidates: list[Training] = []
        url: str | None = None
        while True:
            page = await self.client.list_trainings(page_url=url)
            reached_older = False
            for training in page.results:
                created = store.parse_time(training.created_at)
                if created is not None and created < oldest:
                    reached_older = True
                    break
                if _made_by(training, trainer, record.input):
                    candidates.append(training)
            if reached_older or page.next is None:
                break
            url = page.next
        if not candidates:
            return None
        async with self.pool.acquire() as conn:
            taken = await store.taken_replicate_ids(conn, [c.id for c in candidates])
        for candidate in candidates:
            if taken.get(candidate.id) == record.id:
                # Adopted meanwhile (a webhook, or another worker): settled.
                return candidate
        free = [c for c in candidates if c.id not in taken]
        if not free:
            return None
        # Two identical creates of ours may both be unsettled; the earliest created
        # is the likeliest match, and the start webhook corrects it if not.
        return min(free, key=lambda t: t.created_at or "")

    async def _create(self, record: TrainingRecord) -> None:
        async def mark_sent() -> bool:
            # Marked only once the create's turn has come: waiting for the pace
            # (a throttled account waits minutes) after the mark would let the
            # claim lapse with the create still to go, and another worker,
            # finding it absent on Replicate, would send a second one.
            async with self.pool.acquire() as conn:
                return await store.mark_create_sent(
                    conn, record.id, record.claim_token, lease=self.lease
                )

        try:
            training = await self.client.create_training(
                parse_version(record.trainer),
                record.destination,
                record.input,
                webhook=self.settings.webhook_url(record.id),
                before_send=mark_sent,
            )
        except CreateOutcomeUnknown as exc:
            log.warning("training_create_unanswered", error=exc.detail)
            metrics.SUBMISSIONS.labels("unanswered").inc()
            await self._reschedule(
                record,
                delay=min(5.0, self.settings.settle_window),
                error=exc.detail,
                create_absent=False,
            )
            return
        except ReplicateUnavailable as exc:
            await self._retry_later(record, exc, create_absent=True)
            return
        except ReplicateNotFound as exc:
            if record.attempts + 1 < DESTINATION_LAG_RETRIES:
                await self._retry_later(record, exc, create_absent=True)
            else:
                await self._fail(record, exc.detail)
            return
        except ReplicateRefused as exc:
            await self._fail(record, exc.detail)
            return
        if training is None:
            log.info("training_claim_lost")
            return

        log.info("training_submitted", replicate_id=training.id)
        metrics.SUBMISSIONS.labels("submitted").inc()
        await self._apply(record, Report(source="submitter", training=training))
        if record.cancel_requested_at is not None or await self._cancel_requested(
            record
        ):
            await self._cancel_on_replicate(training.id, record)

    # Helpers -----------------------------------------------------------------

    async def _apply(
        self, record: TrainingRecord, report: Report
    ) -> store.Outcome | None:
        async with self.pool.acquire() as conn, conn.transaction():
            return await transitions.apply_report(
                conn, report, training_id=record.id, policy=self.policy
            )

    async def _fail(self, record: TrainingRecord, message: str) -> None:
        log.warning("training_refused", error=message)
        metrics.SUBMISSIONS.labels("refused").inc()
        await self._apply(
            record, Report(source="submitter", status=Status.FAILED, error=message)
        )

    async def _retry_later(
        self, record: TrainingRecord, exc: ReplicateError, *, create_absent: bool
    ) -> None:
        ceiling = min(MAX_BACKOFF, 2.0 * 2 ** min(record.attempts, 8))
        delay = exc.retry_after or random.uniform(ceiling / 2, ceiling)
        metrics.SUBMISSIONS.labels("deferred").inc()
        log.info(
            "training_submission_deferred", error=exc.detail, delay=round(delay, 1)
        )
        await self._reschedule(
            record, delay=delay, error=exc.detail, create_absent=create_absent
        )

    async def _reschedule(
        self, record: TrainingRecord, *, delay: float, error: str, create_absent: bool
    ) -> None:
        async with self.pool.acquire() as conn:
            await store.reschedule(
                conn,
                record.id,
                record.claim_token,
                delay=delay,
                error=error,
                create_absent=create_absent,
            )

    async def _cancel_requested(self, record: TrainingRecord) -> bool:
        async with self.pool.acquire() as conn:
            current = await store.get(conn, record.id)
        return current is not None and current.cancel_requested_at is not None

    async def _cancel_on_replicate(
        self, replicate_id: str, record: TrainingRecord
    ) -> None:
        try:
            answer = await self.client.cancel_training(replicate_id)
        except ReplicateError as exc:
            # The reconciler retries cancels that are still requested.
            log.warning("training_cancel_deferred", error=exc.detail)
            return
        await self._apply(record, Report(source="cancel", training=answer))


def _made_by(training: Training, trainer: VersionRef, sent: dict[str, Any]) -> bool:
    """Whether a listed training has this trainer and the inputs we sent.

    Replicate may echo inputs with defaults filled in, so every input we sent must
    be there with the same value; extra ones are allowed.
    """
    if training.version != trainer.version:
        return False
    if training.model not in (None, str(trainer.model)):
        return False
    if training.source not in (None, "api"):
        return False
    echoed = training.input or {}
    return all(echoed.get(key) == value for key, value in sent.items())
