"""Trainings and their events: every query, and the one function that changes a
training's state.

`apply_report` is that function. A webhook, a poll, the submitter's create answer
and a cancel all arrive as a `Report`; it records the event (a repeated webhook-id
is a no-op), asks `domain.status.advance` whether the status moves, and writes the
training, and on success its version, in the caller's transaction.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

import asyncpg

from ..domain.names import ModelRef
from ..domain.status import Status, from_replicate
from ..logs import get_logger
from ..replicate.models import Training
from . import notifications

if TYPE_CHECKING:
    from ..config import Settings

log = get_logger()

QUEUED_CHANNEL = "tuneyard_trainings_queued"
# Every recorded event of a training, for live streams on any replica.
EVENTS_CHANNEL = "tuneyard_training_events"

Source = Literal["webhook", "poll", "submitter", "cancel"]


@dataclass(frozen=True)
class TrainingRecord:
    id: str
    caller: str
    idempotency_key: str | None
    request_hash: str
    destination_owner: str
    destination_name: str
    trainer: str
    input: dict[str, Any]
    destination_settings: dict[str, Any] | None
    metadata: dict[str, str]
    callback_url: str | None
    status: Status
    replicate_status: str | None
    replicate_id: str | None
    error: str | None
    version_id: str | None
    attempts: int
    next_attempt_at: datetime
    claim_token: uuid.UUID | None
    last_attempt_error: str | None
    create_sent_at: datetime | None
    cancel_requested_at: datetime | None
    last_event_at: datetime | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> TrainingRecord:
        values = {name: row[name] for name in _RECORD_FIELDS}
        values["status"] = Status(values["status"])
        return _filled(values)

    def with_changes(self, **changes: Any) -> TrainingRecord:
        """A copy with some fields changed (dataclasses.replace, faster)."""
        if not changes.keys() <= _RECORD_FIELD_SET:
            raise TypeError(
                f"not fields of a training: {changes.keys() - _RECORD_FIELD_SET}"
            )
        return _filled({**self.__dict__, **changes})

    @property
    def destination(self) -> ModelRef:
        return ModelRef(self.destination_owner, self.destination_name)

    @property
    def is_unsettled(self) -> bool:
        """A create was sent and its outcome is not known yet."""
        return self.create_sent_at is not None and self.replicate_id is None


_RECORD_FIELDS = tuple(f.name for f in fields(TrainingRecord))
_RECORD_FIELD_SET = frozenset(_RECORD_FIELDS)


def _filled(values: dict[str, Any]) -> TrainingRecord:
    """A record of every field's value, made without the dataclass's __init__.

    A frozen dataclass sets each of its 28 fields through object.__setattr__,
    and the webhook path makes a record for every training it reads and every
    change it applies: taking the values as they are is a third of the cost.
    """
    record = object.__new__(TrainingRecord)
    object.__setattr__(record, "__dict__", values)
    return record


@dataclass(frozen=True)
class NewTraining:
    id: str
    caller: str
    idempotency_key: str | None
    request_hash: str
    destination: ModelRef
    trainer: str
    input: dict[str, Any]
    destination_settings: dict[str, Any] | None
    metadata: dict[str, str]
    callback_url: str | None


@dataclass(frozen=True)
class Report:
    """What was learned about a training, and from where.

    `training` is Replicate's object when there is one; `status` overrides the
    status read from it (the submitter failing a training Replicate refused, a
    cancel of a training Replicate never saw).
    """

    source: Source
    training: Training | None = None
    webhook_id: str | None = None
    status: Status | None = None
    error: str | None = None
    # The body exactly as it arrived (a webhook's), kept as the event's body
    # without parsing and serialising it again.
    raw_body: str | None = None

    @property
    def reported_status(self) -> Status | None:
        if self.status is not None:
            return self.status
        return from_replicate(self.training.status if self.training else None)

    @property
    def replicate_id(self) -> str | None:
        return self.training.id if self.training else None

    def event_body_text(self) -> str:
        if self.raw_body is not None:
            return self.raw_body
        if self.training is not None:
            return self.training.model_dump_json()
        return json.dumps({"status": self.status, "error": self.error})


@dataclass(frozen=True)
class Policy:
    """What a state change needs from the settings."""

    # How long a training on Replicate may stay quiet before it is polled.
    poll_after: timedelta
    # The base of the URLs in callback events.
    public_url: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        assert settings.public_url is not None
        return cls(timedelta(seconds=settings.reconcile_after), settings.public_url)


@dataclass(frozen=True)
class Outcome:
    training: TrainingRecord | None
    duplicate: bool = False
    moved: bool = False
    version_recorded: bool = False
    notes: list[str] = field(default_factory=list)


# Queries -------------------------------------------------------------------

INSERT_DESTINATION = """
INSERT INTO destinations (owner, name) VALUES ($1, $2)
ON CONFLICT (owner, name) DO NOTHING
"""

INSERT_TRAINING = """
INSERT INTO trainings (
    id, caller, idempotency_key, request_hash, destination_owner, destination_name,
    trainer, input, destination_settings, metadata, callback_url
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (caller, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *
"""

SELECT_BY_IDEMPOTENCY_KEY = """
SELECT * FROM trainings WHERE caller = $1 AND idempotency_key = $2
"""

NOTIFY = "SELECT pg_notify($1, $2)"

SELECT_TRAINING = "SELECT * FROM trainings WHERE id = $1"
SELECT_TRAINING_FOR_UPDATE = "SELECT * FROM trainings WHERE id = $1 FOR UPDATE"
SELECT_EVENTS = """
SELECT id, source, status, webhook_id, replicate_id, applied, body, received_at
FROM training_events
WHERE training_id = $1 AND id > $2
ORDER BY id
LIMIT $3
"""


# Intake --------------------------------------------------------------------


async def insert(
    conn: asyncpg.Connection, new: NewTraining, policy: Policy
) -> TrainingRecord | None:
    """Record a queued training and wake the submitters, in one transaction; with
    a callback URL, its training.queued event goes into the outbox with it.

    Returns None when the caller already used this idempotency key.
    """
    async with conn.transaction():
        await conn.execute(
            INSERT_DESTINATION, new.destination.owner, new.destination.name
        )
        row = await conn.fetchrow(
            INSERT_TRAINING,
            new.id,
            new.caller,
            new.idempotency_key,
            new.request_hash,
            new.destination.owner,
            new.destination.name,
            new.trainer,
            new.input,
            new.destination_settings,
            new.metadata,
            new.callback_url,
        )
        if row is None:
            return None
        # Delivered at commit, so a submitter never wakes before the row is visible.
        await conn.execute(NOTIFY, QUEUED_CHANNEL, new.id)
        record = TrainingRecord.from_row(row)
        if record.callback_url is not None:
            event_type, payload = notifications.callback_event(
                record, None, policy.public_url
            )
            await notifications.enqueue(
                conn,
                training_id=record.id,
                caller=record.caller,
                event_type=event_type,
                payload=payload,
                callback_url=record.callback_url,
            )
    return record


async def by_idempotency_key(
    conn: asyncpg.Connection, caller: str, key: str
) -> TrainingRecord | None:
    row = await conn.fetchrow(SELECT_BY_IDEMPOTENCY_KEY, caller, key)
    return None if row is None else TrainingRecord.from_row(row)


async def get(conn: asyncpg.Connection, training_id: str) -> TrainingRecord | None:
    row = await conn.fetchrow(SELECT_TRAINING, training_id)
    return None if row is None else TrainingRecord.from_row(row)


async def lock(conn: asyncpg.Connection, training_id: str) -> TrainingRecord | None:
    row = await conn.fetchrow(SELECT_TRAINING_FOR_UPDATE, training_id)
    return None if row is None else TrainingRecord.from_row(row)


# Listing -------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingFilter:
    statuses: tuple[Status, ...] = ()
    destination: ModelRef | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # Only destinations of these owners, when given (a scoped caller's view).
    owners: tuple[str, ...] = ()


async def page(
    conn: asyncpg.Connection, where: TrainingFilter, *, before: str | None, limit: int
) -> list[TrainingRecord]:
    """Newest first: ids are ULIDs, so `id < before` continues after a cursor."""
    clauses: list[str] = []
    args: list[Any] = []

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.statuses:
        clauses.append(f"status = ANY({param([s.value for s in where.statuses])})")
    if where.destination is not None:
        clauses.append(
            f"destination_owner = {param(where.destination.owner)} "
            f"AND destination_name = {param(where.destination.name)}"
        )
    if where.metadata:
        clauses.append(f"metadata @> {param(where.metadata)}::jsonb")
    if where.owners:
        clauses.append(f"destination_owner = ANY({param(list(where.owners))})")
    if before is not None:
        clauses.append(f"id < {param(before)}")
    sql = "SELECT * FROM trainings"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY id DESC LIMIT {param(limit)}"
    return [TrainingRecord.from_row(row) for row in await conn.fetch(sql, *args)]


async def events(
    conn: asyncpg.Connection, training_id: str, *, after: int = 0, limit: int = 1000
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_EVENTS, training_id, after, limit)


# The submitter's and the reconciler's queues -------------------------------

# Two queues over one table, each served by its own partial index: queued
# trainings for the submitter, trainings running on Replicate for the reconciler.
# A claim pushes next_attempt_at out by the lease and stamps the claim token.
_CLAIM = """
WITH due AS (
    SELECT id FROM trainings
    WHERE {queue} AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE trainings t
SET next_attempt_at = now() + make_interval(secs => $2), claim_token = gen_random_uuid()
FROM due WHERE t.id = due.id
RETURNING t.*
"""


class Queue(Enum):
    QUEUED = (Status.QUEUED,)
    IN_FLIGHT = (Status.SUBMITTED, Status.RUNNING)

    @property
    def statuses(self) -> list[Status]:
        return list(self.value)


CLAIM = {
    # The statuses are written out, not passed as a parameter, so the planner can
    # match each query to its partial index.
    queue: _CLAIM.format(
        queue="status IN ({})".format(", ".join(f"'{s.value}'" for s in queue.value))
    )
    for queue in Queue
}

NEXT_DUE = """
SELECT min(next_attempt_at) FROM trainings WHERE status = ANY($1)
"""

MARK_CREATE_SENT = """
UPDATE trainings
SET create_sent_at = now(), attempts = attempts + 1, updated_at = now(),
    next_attempt_at = now() + make_interval(secs => $3)
WHERE id = $1 AND claim_token = $2 AND status = 'queued'
  AND replicate_id IS NULL AND cancel_requested_at IS NULL
RETURNING create_sent_at
"""

RESCHEDULE = """
UPDATE trainings
SET next_attempt_at = now() + make_interval(secs => $3),
    last_attempt_error = $4,
    create_sent_at = CASE WHEN $5 THEN NULL ELSE create_sent_at END,
    updated_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'queued'
"""

SELECT_TAKEN_REPLICATE_IDS = """
SELECT replicate_id, id FROM trainings WHERE replicate_id = ANY($1)
"""

REQUEST_CANCEL = """
UPDATE trainings SET cancel_requested_at = coalesce(cancel_requested_at, now()),
    updated_at = now()
WHERE id = $1
RETURNING *
"""


async def claim(
    conn: asyncpg.Connection, queue: Queue, limit: int, lease: float
) -> list[TrainingRecord]:
    """Take up to `limit` due trainings of `queue` for `lease` seconds.

    Each claim gets a token of its own (the record's claim_token), and the
    writes that need the claim still held are fenced on it. Per claim, not per
    worker: a worker can claim a training again while its own earlier attempt is
    still waiting (a lapsed lease), and that attempt must then write nothing.
    """
    rows = await conn.fetch(CLAIM[queue], limit, lease)
    return [TrainingRecord.from_row(row) for row in rows]


async def next_due(conn: asyncpg.Connection, queue: Queue) -> datetime | None:
    """When the next training of `queue` falls due, if any is waiting."""
    return await conn.fetchval(NEXT_DUE, [s.value for s in queue.statuses])


async def mark_create_sent(
    conn: asyncpg.Connection, training_id: str, token: uuid.UUID, *, lease: float
) -> bool:
    """Commit that a create is about to be sent; False if the claim was lost or
    the training was cancelled meanwhile, in which case nothing may be sent.

    The claim is renewed for `lease` seconds, which must outlast the create's
    timeout: no other worker may take the training up while the create is out.
    """
    row = await conn.fetchval(MARK_CREATE_SENT, training_id, token, lease)
    return row is not None


async def reschedule(
    conn: asyncpg.Connection,
    training_id: str,
    token: uuid.UUID,
    *,
    delay: float,
    error: str | None,
    create_absent: bool,
) -> None:
    """Try again after `delay` seconds. `create_absent` says no create exists on
    Replicate (none was sent, or one was shown never to have arrived)."""
    await conn.execute(RESCHEDULE, training_id, token, delay, error, create_absent)


async def taken_replicate_ids(
    conn: asyncpg.Connection, ids: list[str]
) -> dict[str, str]:
    """Which of these Replicate ids belong to a training already, and to which."""
    rows = await conn.fetch(SELECT_TAKEN_REPLICATE_IDS, ids)
    return {row["replicate_id"]: row["id"] for row in rows}


async def request_cancel(
    conn: asyncpg.Connection, training_id: str
) -> TrainingRecord | None:
    row = await conn.fetchrow(REQUEST_CANCEL, training_id)
    return None if row is None else TrainingRecord.from_row(row)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
