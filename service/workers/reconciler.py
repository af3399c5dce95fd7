"""The reconciler: asks Replicate about trainings that have gone quiet.

A webhook can be lost (Tuneyard down when it was sent, a network fault, Replicate
giving up its retries). A training that is on Replicate and has had no news for
TUNEYARD_RECONCILE_AFTER seconds is fetched and the answer applied through the same
function as a webhook, so a lost webhook still ends in the right status and
version. A cancel that could not reach Replicate is retried here too.
"""

from __future__ import annotations

import asyncpg
from structlog.contextvars import bind_contextvars

from .. import metrics
from ..config import Settings
from ..logs import get_logger
from ..replicate.client import ReplicateClient
from ..replicate.errors import ReplicateError
from ..store import trainings as store
from ..store import transitions
from ..store.trainings import Policy, Report, TrainingRecord
from .base import TrainingWorker

log = get_logger()


class Reconciler(TrainingWorker):
    name = "reconciler"
    queue = store.Queue.IN_FLIGHT

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
            poll_interval=min(settings.worker_poll_interval, settings.reconcile_after),
            concurrency=4,
        )
        self.client = client
        self.quiet = settings.reconcile_after
        self.policy = Policy.from_settings(settings)

    @property
    def lease(self) -> float:
        # The claim pushes the next look out by the quiet period, so a training
        # whose poll fails is simply polled again later.
        return self.quiet

    async def handle(self, item: object) -> None:
        assert isinstance(item, TrainingRecord)
        record = item
        assert record.replicate_id is not None
        bind_contextvars(training_id=record.id, replicate_id=record.replicate_id)
        action = "cancel" if record.cancel_requested_at is not None else "poll"
        try:
            if action == "cancel":
                training = await self.client.cancel_training(record.replicate_id)
            else:
                training = await self.client.get_training(record.replicate_id)
        except ReplicateError as exc:
            log.warning("reconcile_failed", error=exc.detail)
            metrics.RECONCILER_ACTIONS.labels(action, "failed").inc()
            return
        async with self.pool.acquire() as conn, conn.transaction():
            outcome = await transitions.apply_report(
                conn,
                Report(source=action, training=training),
                training_id=record.id,
                policy=self.policy,
            )
        metrics.RECONCILER_ACTIONS.labels(
            action, "moved" if outcome.moved else "unchanged"
        ).inc()
        log.info(
            "training_reconciled",
            action=action,
            replicate_status=training.status,
            moved=outcome.moved,
        )
