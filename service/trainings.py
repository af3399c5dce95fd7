"""What can be done to a training from outside: accept it, cancel it.

Both the API and the workers change trainings only through
`store.trainings.apply_report`; this module adds the parts that span the database
and Replicate.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg

from .domain.ids import new_id
from .domain.names import ModelRef
from .domain.status import Status
from .errors import Conflict, NotFound, ValidationFailed
from .logs import get_logger
from .replicate.client import ReplicateClient
from .replicate.errors import ReplicateUnavailable
from .store import trainings as store
from .store import transitions
from .store.trainings import NewTraining, Policy, Report, TrainingRecord

log = get_logger()


def request_hash(body: dict[str, Any]) -> str:
    """A fingerprint of a request's meaning: key order and spacing do not count."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def accept(
    pool: asyncpg.Pool,
    *,
    caller: str,
    idempotency_key: str | None,
    destination: ModelRef,
    trainer: str,
    body: dict[str, Any],
    policy: Policy,
) -> tuple[TrainingRecord, bool]:
    """Record a queued training; returns it and whether it is a replay.

    The same idempotency key with the same body gives back the training it made
    the first time; with another body it is refused, since the caller would
    otherwise believe a different request had been accepted.
    """
    fingerprint = request_hash(body)
    new = NewTraining(
        id=new_id("trn"),
        caller=caller,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        destination=destination,
        trainer=trainer,
        input=body["input"],
        destination_settings=body.get("destination_settings"),
        metadata=body.get("metadata") or {},
        callback_url=body.get("callback_url"),
    )
    async with pool.acquire() as conn:
        record = await store.insert(conn, new, policy)
        if record is not None:
            log.info(
                "training_accepted",
                training_id=record.id,
                destination=str(destination),
                caller=caller,
            )
            return record, False
        assert idempotency_key is not None
        existing = await store.by_idempotency_key(conn, caller, idempotency_key)
    assert existing is not None
    if existing.request_hash != fingerprint:
        raise ValidationFailed(
            "Idempotency-Key was already used with a different request body; "
            "use a new key for a new request",
            errors=[
                {"field": "Idempotency-Key", "message": "reused with another body"}
            ],
        )
    return existing, True


async def cancel(
    pool: asyncpg.Pool,
    client: ReplicateClient,
    training_id: str,
    *,
    policy: Policy,
) -> TrainingRecord:
    """Cancel a training wherever it is.

    Queued and never sent: cancelled here. On Replicate: cancelled there and the
    answer applied. A create in flight or unsettled: the request is recorded and
    the submitter cancels once it knows the Replicate id. If Replicate cannot be
    reached, the request stays recorded and the reconciler tries again.
    """
    async with pool.acquire() as conn, conn.transaction():
        record = await store.lock(conn, training_id)
        if record is None:
            raise NotFound(f"no training {training_id}")
        if record.status.is_terminal:
            raise Conflict(f"training {training_id} has already {record.status.value}")
        if record.status is Status.QUEUED and record.create_sent_at is None:
            outcome = await transitions.apply_report(
                conn,
                Report(source="cancel", status=Status.CANCELED),
                training_id=training_id,
                policy=policy,
            )
            assert outcome.training is not None
            return outcome.training
        record = await store.request_cancel(conn, training_id)
        assert record is not None

    if record.replicate_id is None:
        return record
    try:
        answer = await client.cancel_training(record.replicate_id)
    except ReplicateUnavailable as exc:
        log.warning("training_cancel_deferred", training_id=training_id, error=str(exc))
        return record
    async with pool.acquire() as conn, conn.transaction():
        outcome = await transitions.apply_report(
            conn,
            Report(source="cancel", training=answer),
            training_id=training_id,
            policy=policy,
        )
    assert outcome.training is not None
    return outcome.training
