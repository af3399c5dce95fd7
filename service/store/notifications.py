"""The outbox of callbacks to callers, and the record of every delivery attempt."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic_core import to_json

from ..domain.ids import new_id
from ..domain.views import training_fields, version_fields

if TYPE_CHECKING:
    from .trainings import TrainingRecord

CHANNEL = "tuneyard_notifications"
# The notifiers only need to know there is work; one payload for every NOTIFY
# lets PostgreSQL fold a transaction's many into one.
WAKE = "new"


@dataclass(frozen=True)
class NotificationRecord:
    id: str
    seq: int
    training_id: str
    caller: str
    type: str
    payload: dict[str, Any]
    callback_url: str
    status: str
    attempts: int
    retry_index: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    created_at: datetime
    claim_token: uuid.UUID | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> NotificationRecord:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def body(self) -> bytes:
        """The bytes sent, the same on every attempt, so one signature scheme fits
        all of them and a receiver can deduplicate on the webhook-id alone."""
        return json.dumps(self.payload, separators=(",", ":")).encode()


INSERT = """
INSERT INTO notifications (id, training_id, caller, type, payload, callback_url)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
"""

NOTIFY = "SELECT pg_notify($1, $2)"

# A training's notifications go out one at a time, oldest first: only the
# earliest pending one of each training may be claimed, and only once due.
#
# The status and due-time conditions must be on the locked row `n`, not on the
# `heads` CTE: when a concurrent claim commits first, PostgreSQL re-checks only
# the locked row's own conditions against its new version, and a condition read
# from the CTE's older snapshot would let the same event be claimed twice.
CLAIM = """
WITH heads AS (
    SELECT DISTINCT ON (training_id) id
    FROM notifications
    WHERE status = 'pending'
    ORDER BY training_id, seq
),
due AS (
    SELECT n.id
    FROM notifications n JOIN heads h ON h.id = n.id
    WHERE n.status = 'pending' AND n.next_attempt_at <= now()
    ORDER BY n.next_attempt_at
    LIMIT $1
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE notifications n
SET next_attempt_at = now() + make_interval(secs => $2), claim_token = gen_random_uuid()
FROM due WHERE n.id = due.id
RETURNING n.*
"""

NEXT_DUE = """
SELECT min(next_attempt_at) FROM notifications WHERE status = 'pending'
"""

INSERT_ATTEMPT = """
INSERT INTO notification_attempts
    (notification_id, attempt, started_at, duration_ms, status_code, error)
VALUES ($1, $2, $3, $4, $5, $6)
"""

RECORD_OUTCOME = """
UPDATE notifications
SET attempts = $3,
    retry_index = retry_index + 1,
    status = $4,
    delivered_at = CASE WHEN $4 = 'delivered' THEN now() ELSE delivered_at END,
    next_attempt_at = now() + make_interval(secs => $5),
    last_error = $6,
    claim_token = NULL
WHERE id = $1 AND claim_token = $2
RETURNING id
"""

SELECT_FOR_TRAINING = """
SELECT * FROM notifications WHERE training_id = $1 ORDER BY seq
"""

SELECT_ATTEMPTS = """
SELECT notification_id, attempt, started_at, duration_ms, status_code, error
FROM notification_attempts
WHERE notification_id = ANY($1)
ORDER BY notification_id, attempt
"""

SELECT_ONE = "SELECT * FROM notifications WHERE id = $1"

# Redelivery makes the event due now with a fresh schedule; its attempts so far
# stay on record and its webhook-id stays the same.
REDELIVER_ONE = """
UPDATE notifications
SET status = 'pending', next_attempt_at = now(), claim_token = NULL, retry_index = 0
WHERE id = $1 AND status <> 'pending'
RETURNING *
"""

REDELIVER_FAILED = """
UPDATE notifications
SET status = 'pending', next_attempt_at = now(), claim_token = NULL, retry_index = 0
WHERE status = 'failed' AND caller = $1 AND created_at >= $2
RETURNING id
"""


def callback_event(
    record: TrainingRecord, version: Mapping[str, Any] | None, base: str
) -> tuple[str, str]:
    """The callback event for a training's current status: its type, and its
    body as JSON (the training, and the version when the change made one)."""
    event_type = f"training.{record.status.value}"
    event: dict[str, Any] = {
        "type": event_type,
        "training": training_fields(record, base),
    }
    if version is not None:
        event["version"] = version_fields(version, base)
    return event_type, to_json(event).decode()


async def enqueue(
    conn: asyncpg.Connection,
    *,
    training_id: str,
    caller: str,
    event_type: str,
    payload: str,
    callback_url: str,
) -> str:
    """Add a callback (its JSON body as text) to the outbox, in the caller's
    transaction."""
    notification_id = new_id("msg")
    await conn.execute(
        INSERT, notification_id, training_id, caller, event_type, payload, callback_url
    )
    await conn.execute(NOTIFY, CHANNEL, WAKE)
    return notification_id


async def claim(
    conn: asyncpg.Connection, limit: int, lease: float
) -> list[NotificationRecord]:
    """Take up to `limit` due notifications, each with a claim token of its own
    (see trainings.claim)."""
    rows = await conn.fetch(CLAIM, limit, lease)
    return [NotificationRecord.from_row(row) for row in rows]


async def next_due(conn: asyncpg.Connection) -> datetime | None:
    return await conn.fetchval(NEXT_DUE)


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


async def record_attempt(
    conn: asyncpg.Connection,
    notification: NotificationRecord,
    attempt: Attempt,
    *,
    status: str,
    retry_in: float,
) -> bool:
    """Keep an attempt and its outcome; False if the claim was lost meanwhile."""
    async with conn.transaction():
        recorded = await conn.fetchval(
            RECORD_OUTCOME,
            notification.id,
            notification.claim_token,
            attempt.number,
            status,
            retry_in,
            attempt.error,
        )
        if recorded is None:
            return False
        await conn.execute(
            INSERT_ATTEMPT,
            notification.id,
            attempt.number,
            attempt.started_at,
            attempt.duration_ms,
            attempt.status_code,
            attempt.error,
        )
    return True


async def for_training(
    conn: asyncpg.Connection, training_id: str
) -> list[tuple[NotificationRecord, list[asyncpg.Record]]]:
    """A training's notifications in order, each with its attempts."""
    rows = await conn.fetch(SELECT_FOR_TRAINING, training_id)
    notifications = [NotificationRecord.from_row(row) for row in rows]
    attempts = await conn.fetch(SELECT_ATTEMPTS, [n.id for n in notifications])
    by_id: dict[str, list[asyncpg.Record]] = {}
    for row in attempts:
        by_id.setdefault(row["notification_id"], []).append(row)
    return [(n, by_id.get(n.id, [])) for n in notifications]


async def get(
    conn: asyncpg.Connection, notification_id: str
) -> NotificationRecord | None:
    row = await conn.fetchrow(SELECT_ONE, notification_id)
    return None if row is None else NotificationRecord.from_row(row)


async def redeliver(
    conn: asyncpg.Connection, notification_id: str
) -> NotificationRecord | None:
    """Send a delivered or failed notification again; None if it is pending."""
    row = await conn.fetchrow(REDELIVER_ONE, notification_id)
    if row is None:
        return None
    await conn.execute(NOTIFY, CHANNEL, WAKE)
    return NotificationRecord.from_row(row)


async def redeliver_failed(
    conn: asyncpg.Connection, caller: str, since: datetime
) -> int:
    rows = await conn.fetch(REDELIVER_FAILED, caller, since)
    if rows:
        await conn.execute(NOTIFY, CHANNEL, WAKE)
    return len(rows)
