"""The one function that changes a training's state, for one report or many.

A webhook, a poll, the submitter's create answer and a cancel all arrive as a
`Report`. `apply_reports` takes a batch of them (the webhook path sends many
concurrent webhooks in one transaction; every other caller sends one) and, in the
caller's transaction:

1. locks every training the reports name, in id order, so concurrent batches
   never wait on each other in a cycle;
2. reads, in the same statement, which webhook-ids are already recorded: a
   repeated webhook-id changes nothing;
3. applies the reports in arrival order to in-memory copies of the trainings,
   each through `domain.status.advance`, so statuses only move forward;
4. writes the events, the trainings' new states, new versions and callback
   events in one statement. An event that still conflicts (for a training
   Tuneyard does not know, which no lock covers) is answered as a duplicate.

Two ways to guard against concurrent change share this code. Inside the caller's
transaction (`lock=True`, every caller but the webhook path), step 1 takes row
locks. The webhook path (`lock=False`) reads without locks and writes in one
autocommit statement, two round trips a batch: that statement refuses, as a
whole, if a training it updates changed since the read (its updated_at moved) or
an event it meant to record was recorded meanwhile, and the batch is then read
and applied again (WriteConflict). Within a process such conflicts cannot occur,
since one training's webhooks all go to one writer (webhooks.ingest); they
guard against other replicas and other code paths.

Each report is answered only after the commit that made it durable.

Reading recorded webhook-ids in the locking statement uses that statement's
snapshot, taken before any wait for a lock: a webhook-id that a concurrent batch
recorded for the same training, while this one waited, is not seen there. The
write then finds it (its event conflicts) and it is answered as a duplicate; and
applying it again changed nothing, because a concurrent repeat is a retry of the
same message, and a status only moves forward once. Within a process it cannot
happen at all: one training's webhooks all go to one writer (webhooks.ingest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from .. import metrics
from ..domain.ids import new_id
from ..domain.status import Status, advance
from ..logs import get_logger
from ..replicate.models import Training
from . import notifications
from .trainings import (
    EVENTS_CHANNEL,
    Outcome,
    Policy,
    Report,
    TrainingRecord,
    parse_time,
)

log = get_logger()


@dataclass(frozen=True)
class Item:
    """A report, and the Tuneyard training it names when its sender knows it
    (a webhook's URL carries it)."""

    report: Report
    training_id: str | None = None


READ_TRAININGS = """
SELECT t.*,
       ARRAY(SELECT webhook_id FROM training_events
             WHERE webhook_id = ANY($3::text[])) AS recorded_webhooks
FROM trainings t
WHERE t.replicate_id = ANY($1::text[]) OR t.id = ANY($2::text[])
"""

LOCK_TRAININGS = """
SELECT t.*,
       ARRAY(SELECT webhook_id FROM training_events
             WHERE webhook_id = ANY($3::text[])) AS recorded_webhooks
FROM trainings t
WHERE t.replicate_id = ANY($1::text[]) OR t.id = ANY($2::text[])
ORDER BY t.id
FOR UPDATE OF t
"""

# When no training is named (every webhook of a batch is for trainings Tuneyard
# does not know), the locking statement returns no row to carry the ids.
RECORDED_WEBHOOKS = """
SELECT webhook_id FROM training_events WHERE webhook_id = ANY($1::text[])
"""

# The whole write of a batch in one statement, one round trip: PostgreSQL runs
# every data-modifying CTE exactly once, whatever the final SELECT reads, and the
# pg_notify selects run because the final SELECT reads them. Empty arrays write
# nothing.
WRITE = """
WITH events AS (
    INSERT INTO training_events
        (training_id, replicate_id, webhook_id, source, status, applied, body)
    SELECT training_id, replicate_id, webhook_id, source, status, applied,
           body::jsonb
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::boolean[], $7::text[])
        AS e(training_id, replicate_id, webhook_id, source, status, applied, body)
    ON CONFLICT (webhook_id) DO NOTHING
    RETURNING webhook_id
),
states AS (
    UPDATE trainings t SET
        status = u.status,
        replicate_id = u.replicate_id,
        replicate_status = u.replicate_status,
        error = u.error,
        version_id = u.version_id,
        submitted_at = u.submitted_at,
        started_at = u.started_at,
        completed_at = u.completed_at,
        next_attempt_at = u.next_attempt_at,
        create_sent_at = u.create_sent_at,
        last_attempt_error = u.last_attempt_error,
        last_event_at = u.changed_at,
        updated_at = u.changed_at
    FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                $13::text[], $14::timestamptz[], $15::timestamptz[],
                $16::timestamptz[], $17::timestamptz[], $18::timestamptz[],
                $19::text[], $20::timestamptz[], $38::timestamptz[])
        AS u(id, status, replicate_id, replicate_status, error, version_id,
             submitted_at, started_at, completed_at, next_attempt_at,
             create_sent_at, last_attempt_error, changed_at, read_at)
    -- As it was read: a training changed meanwhile is not updated, and the
    -- check below then refuses the whole statement.
    WHERE t.id = u.id AND t.updated_at = u.read_at
    RETURNING t.id
),
versions AS (
    INSERT INTO versions
        (owner, name, version_id, training_id, weights_url, created_at, recorded_at)
    SELECT * FROM unnest($21::text[], $22::text[], $23::text[], $24::text[],
                         $25::text[], $26::timestamptz[], $27::timestamptz[])
    ON CONFLICT (owner, name, version_id) DO NOTHING
    RETURNING training_id
),
callbacks AS (
    INSERT INTO notifications (id, training_id, caller, type, payload, callback_url)
    SELECT id, training_id, caller, type, payload::jsonb, callback_url
    FROM unnest($28::text[], $29::text[], $30::text[], $31::text[], $32::text[],
                $33::text[])
        AS n(id, training_id, caller, type, payload, callback_url)
),
-- One notification per training and channel: PostgreSQL folds identical ones
-- in a transaction, and a listener only needs to know where to look.
streams AS (SELECT pg_notify($34, t) FROM unnest($35::text[]) AS t),
outbox AS (SELECT pg_notify($36, $37) WHERE cardinality($28::text[]) > 0)
SELECT
    ARRAY(SELECT webhook_id FROM events) AS new_events,
    ARRAY(SELECT training_id FROM versions) AS new_versions,
    (SELECT count(*) FROM streams) + (SELECT count(*) FROM outbox) AS notified,
    CASE WHEN (SELECT count(*) FROM states) = cardinality($8::text[])
          AND (SELECT count(*) FROM events WHERE webhook_id = ANY($39::text[]))
              = cardinality($39::text[])
         THEN true
         ELSE tuneyard_write_conflict()
    END AS unchanged
"""


class WriteConflict(Exception):
    """A training changed between the read and the write; apply the batch again."""


WRITE_CONFLICT = "TY409"


async def apply_report(
    conn: asyncpg.Connection,
    report: Report,
    *,
    training_id: str | None = None,
    policy: Policy,
) -> Outcome:
    """Apply one report; call inside a transaction. See `apply_reports`."""
    [outcome] = await apply_reports(conn, [Item(report, training_id)], policy=policy)
    return outcome


async def apply_reports(
    conn: asyncpg.Connection,
    items: Sequence[Item],
    *,
    policy: Policy,
    lock: bool = True,
    snapshot: Snapshot | None = None,
) -> list[Outcome]:
    """Apply reports in order; call inside a transaction. One outcome per item.

    A training is found by Replicate's id when the report has one, else by
    Tuneyard's id. A webhook for a training whose create answer was lost names
    Tuneyard's id in its URL: the first report carrying a Replicate id settles
    that create.

    `snapshot` is what `read_batch` found for these items, when the caller
    read them itself; otherwise they are read here.
    """
    if snapshot is None:
        snapshot = await read_batch(conn, items, lock=lock)
    batch = _Batch(policy, snapshot.trainings, snapshot.recorded)
    pending = [batch.apply(item) for item in items]
    written = await batch.write(conn)
    return [p.outcome(written) for p in pending]


@dataclass(frozen=True)
class Snapshot:
    """The trainings a batch of reports names, as read, and which of its
    webhook-ids were already recorded."""

    trainings: list[TrainingRecord]
    recorded: set[str]


async def read_batch(
    conn: asyncpg.Connection, items: Sequence[Item], *, lock: bool
) -> Snapshot:
    """Step 1 (and 2) of `apply_reports`: with `lock`, under row locks."""
    replicate_ids = [i.report.replicate_id for i in items if i.report.replicate_id]
    training_ids = [i.training_id for i in items if i.training_id]
    webhook_ids = [i.report.webhook_id for i in items if i.report.webhook_id]
    read = LOCK_TRAININGS if lock else READ_TRAININGS
    rows = await conn.fetch(read, replicate_ids, training_ids, webhook_ids)
    if rows:
        recorded = set(rows[0]["recorded_webhooks"])
    elif webhook_ids:
        recorded = {
            r["webhook_id"] for r in await conn.fetch(RECORDED_WEBHOOKS, webhook_ids)
        }
    else:
        recorded = set()
    return Snapshot([TrainingRecord.from_row(row) for row in rows], recorded)


@dataclass
class _Written:
    """What the database said while writing: which events and versions were new."""

    events: set[str] = field(default_factory=set)
    versions_of: set[str] = field(default_factory=set)


@dataclass
class _Pending:
    training: TrainingRecord | None
    duplicate: bool = False
    moved: bool = False
    # Whether this report's webhook was new is known once its event is written.
    webhook_id: str | None = None
    version_for: str | None = None
    notes: list[str] = field(default_factory=list)

    def outcome(self, written: _Written) -> Outcome:
        duplicate = self.duplicate or (
            self.webhook_id is not None and self.webhook_id not in written.events
        )
        return Outcome(
            self.training,
            duplicate=duplicate,
            moved=self.moved and not duplicate,
            version_recorded=self.version_for is not None
            and self.version_for in written.versions_of,
            notes=self.notes,
        )


class _Batch:
    def __init__(
        self,
        policy: Policy,
        trainings: list[TrainingRecord],
        recorded_webhooks: set[str],
    ) -> None:
        self.policy = policy
        self.now = datetime.now(UTC)
        self.by_id = {t.id: t for t in trainings}
        self.by_replicate_id = {
            t.replicate_id: t.id for t in trainings if t.replicate_id
        }
        # Webhook-ids recorded before, or met earlier in this batch.
        self.seen = set(recorded_webhooks)
        self.changed: dict[str, TrainingRecord] = {}
        # When each changed training was last updated, as read: the write
        # applies only over that.
        self.read_at: dict[str, datetime] = {}
        # Webhook events this batch applied as new; the write must record them.
        self.applied_webhooks: list[str] = []
        self.events: list[tuple[Any, ...]] = []
        self.versions: list[tuple[Any, ...]] = []
        self.notifications: list[tuple[Any, ...]] = []
        self.logs: list[tuple[str, dict[str, Any]]] = []

    def apply(self, item: Item) -> _Pending:
        report = item.report
        record = self._find(report, item.training_id)
        if report.webhook_id is not None:
            if report.webhook_id in self.seen:
                return _Pending(record, duplicate=True)
            self.seen.add(report.webhook_id)

        if record is None:
            self._event(None, report, applied=False)
            self.logs.append(
                (
                    "training_unknown",
                    {
                        "replicate_id": report.replicate_id,
                        "source": report.source,
                        "training_id": item.training_id,
                    },
                )
            )
            return _Pending(None, webhook_id=report.webhook_id)

        replicate_id = record.replicate_id
        if report.replicate_id is not None and replicate_id is None:
            replicate_id = report.replicate_id
        elif report.replicate_id not in (None, replicate_id):
            # A second Replicate training for one Tuneyard training: never
            # expected, since creates are settled before they are repeated.
            self._event(None, report, applied=False)
            self.logs.append(
                (
                    "training_second_replicate_id",
                    {
                        "training_id": record.id,
                        "replicate_id": replicate_id,
                        "other_replicate_id": report.replicate_id,
                    },
                )
            )
            return _Pending(
                record, webhook_id=report.webhook_id, notes=["second_replicate_id"]
            )

        settled = record.replicate_id is None and replicate_id is not None
        new_status = advance(record.status, report.reported_status)
        if settled and new_status is None:
            # Replicate has the training, whatever status it reports.
            new_status = advance(record.status, Status.SUBMITTED)
        news = new_status is not None or settled or _has_news(record, report)
        # Webhooks are always kept: the webhook-id is the dedupe, and the trail
        # shows what arrived. A poll that changed nothing is not worth a row.
        if report.webhook_id is not None or news:
            self._event(record.id, report, applied=news)
        if not news:
            return _Pending(record, webhook_id=report.webhook_id)
        if report.webhook_id is not None:
            self.applied_webhooks.append(report.webhook_id)

        updated, version = self._change(record, report, new_status, replicate_id)
        self.read_at.setdefault(record.id, record.updated_at)
        self.by_id[record.id] = self.changed[record.id] = updated
        if replicate_id is not None:
            self.by_replicate_id[replicate_id] = record.id
        if new_status is not None:
            metrics.transitions(updated.status.value, report.source).inc()
            self._callback(updated, version)
            self.logs.append(
                (
                    "training_status_changed",
                    {
                        "training_id": record.id,
                        "replicate_id": replicate_id,
                        "source": report.source,
                        "previous": record.status.value,
                        "status": updated.status.value,
                    },
                )
            )
        else:
            self.logs.append(
                (
                    "training_create_settled",
                    {
                        "training_id": record.id,
                        "replicate_id": replicate_id,
                        "source": report.source,
                    },
                )
            )
        return _Pending(
            updated,
            moved=new_status is not None,
            webhook_id=report.webhook_id,
            version_for=record.id if version is not None else None,
        )

    def _find(self, report: Report, training_id: str | None) -> TrainingRecord | None:
        if report.replicate_id is not None:
            found = self.by_replicate_id.get(report.replicate_id)
            if found is not None:
                return self.by_id[found]
        return self.by_id.get(training_id) if training_id is not None else None

    def _change(
        self,
        record: TrainingRecord,
        report: Report,
        new_status: Status | None,
        replicate_id: str | None,
    ) -> tuple[TrainingRecord, dict[str, Any] | None]:
        now = self.now
        status = new_status or record.status
        replicate_status = record.replicate_status
        if report.training is not None and (
            new_status or report.reported_status is None
        ):
            # Keep Replicate's word, including statuses Tuneyard does not know
            # yet, unless it is an old status arriving late.
            replicate_status = report.training.status

        version_id, version, error = record.version_id, None, record.error
        if new_status is Status.SUCCEEDED and report.training is not None:
            version = self._version(record, report.training)
            if version is not None:
                version_id = version["version_id"]
        if new_status is Status.FAILED:
            error = report.error or (
                report.training.error_message if report.training else None
            )
        if new_status is Status.CANCELED:
            error = report.error or error

        submitted_at = record.submitted_at
        if replicate_id is not None and submitted_at is None:
            submitted_at = now
        started_at = record.started_at
        if status in (Status.RUNNING, Status.SUCCEEDED) and started_at is None:
            started_at = _replicate_time(report, "started_at") or now
        completed_at = record.completed_at
        if status.is_terminal and completed_at is None:
            completed_at = _replicate_time(report, "completed_at") or now
        in_flight = status in (Status.SUBMITTED, Status.RUNNING)

        updated = record.with_changes(
            status=status,
            replicate_id=replicate_id,
            replicate_status=replicate_status,
            error=error,
            version_id=version_id,
            submitted_at=submitted_at,
            started_at=started_at,
            completed_at=completed_at,
            # A quiet training is polled once this passes; news pushes it back.
            next_attempt_at=now + self.policy.poll_after if in_flight else now,
            create_sent_at=record.create_sent_at if replicate_id is None else None,
            last_attempt_error=(
                record.last_attempt_error if status is Status.QUEUED else None
            ),
            last_event_at=now,
            updated_at=now,
        )
        return updated, version

    def _version(
        self, record: TrainingRecord, training: Training
    ) -> dict[str, Any] | None:
        produced = training.output_version
        if produced is None:
            self.logs.append(
                ("training_succeeded_without_version", {"training_id": record.id})
            )
            return None
        destination, version_id = produced
        if destination != record.destination:
            self.logs.append(
                (
                    "training_version_elsewhere",
                    {
                        "training_id": record.id,
                        "destination": str(record.destination),
                        "output_destination": str(destination),
                    },
                )
            )
            return None
        version = {
            "owner": destination.owner,
            "name": destination.name,
            "version_id": version_id,
            "training_id": record.id,
            "weights_url": training.weights_url,
            "created_at": parse_time(training.completed_at) or self.now,
            "recorded_at": self.now,
        }
        self.versions.append(tuple(version.values()))
        return version

    def _callback(self, record: TrainingRecord, version: dict[str, Any] | None) -> None:
        """Put the training's new status in the outbox, if its caller wants
        callbacks: a snapshot written in the same transaction as the change, so
        it exists if and only if the change was committed."""
        if record.callback_url is None:
            return
        event_type, payload = notifications.callback_event(
            record,
            _version_view(record, version) if version is not None else None,
            self.policy.public_url,
        )
        self.notifications.append(
            (
                new_id("msg"),
                record.id,
                record.caller,
                event_type,
                payload,
                record.callback_url,
            )
        )

    def _event(self, training_id: str | None, report: Report, *, applied: bool) -> None:
        status = report.training.status if report.training else report.status
        self.events.append(
            (
                training_id,
                report.replicate_id,
                report.webhook_id,
                report.source,
                status,
                applied,
                report.event_body_text(),
            )
        )

    async def write(self, conn: asyncpg.Connection) -> _Written:
        touched = sorted({e[0] for e in self.events if e[0] is not None})
        try:
            row = await conn.fetchrow(
                WRITE,
                *_columns(self.events, 7),
                *_columns([_state(t) for t in self.changed.values()], 13),
                *_columns(self.versions, 7),
                *_columns(self.notifications, 6),
                EVENTS_CHANNEL,
                touched,
                notifications.CHANNEL,
                notifications.WAKE,
                [self.read_at[t] for t in self.changed],
                self.applied_webhooks,
            )
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == WRITE_CONFLICT:
                raise WriteConflict(str(exc)) from None
            raise
        written = _Written(
            events={w for w in row["new_events"] if w is not None},
            versions_of=set(row["new_versions"]),
        )
        for event, fields in self.logs:
            log.info(event, **fields)
        for version in self.versions:
            if version[3] in written.versions_of:
                log.info(
                    "version_recorded",
                    training_id=version[3],
                    destination=f"{version[0]}/{version[1]}",
                    version_id=version[2],
                )
        return written


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one array per column, for unnest()."""
    return [[row[i] for row in rows] for i in range(width)]


def _state(t: TrainingRecord) -> tuple[Any, ...]:
    return (
        t.id,
        t.status.value,
        t.replicate_id,
        t.replicate_status,
        t.error,
        t.version_id,
        t.submitted_at,
        t.started_at,
        t.completed_at,
        t.next_attempt_at,
        t.create_sent_at,
        t.last_attempt_error,
        t.updated_at,
    )


def _version_view(record: TrainingRecord, version: dict[str, Any]) -> dict[str, Any]:
    """The version as the API shows it, from what this batch knows."""
    return {
        **version,
        "description": None,
        "tags": [],
        "aliases": [],
        "deleted_at": None,
        "source": "training",
        "replicate_id": record.replicate_id,
        "trainer": record.trainer,
        "input": record.input,
        "caller": record.caller,
        "metadata": record.metadata,
    }


def _has_news(record: TrainingRecord, report: Report) -> bool:
    """A report that moves nothing may still carry a status Tuneyard does not know."""
    return (
        report.training is not None
        and report.reported_status is None
        and not record.status.is_terminal
        and report.training.status != record.replicate_status
    )


def _replicate_time(report: Report, name: str) -> datetime | None:
    if report.training is None:
        return None
    return parse_time(getattr(report.training, name))
