"""apply_report: the one function that changes a training's state."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.domain.status import Status
from service.store import trainings as store
from service.store import transitions
from service.store.trainings import Report, TrainingRecord

from ..support.factories import POLICY, queued_training, replicate_training


async def apply(
    pool: asyncpg.Pool, report: Report, training_id: str | None = None
) -> store.Outcome:
    async with pool.acquire() as conn, conn.transaction():
        return await transitions.apply_report(
            conn, report, training_id=training_id, policy=POLICY
        )


def webhook(replicate_id: str, status: str, webhook_id: str, **kw: object) -> Report:
    return Report(
        source="webhook",
        training=replicate_training(replicate_id, status, **kw),
        webhook_id=webhook_id,
    )


@pytest.fixture
async def training(pool: asyncpg.Pool) -> TrainingRecord:
    async with pool.acquire() as conn:
        return await queued_training(conn)


async def test_webhooks_take_a_training_from_queued_to_succeeded_with_its_version(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "starting", "msg_1"), training.id)
    await apply(pool, webhook("r8a", "processing", "msg_2"))
    outcome = await apply(
        pool, webhook("r8a", "succeeded", "msg_3", version_id="b" * 64)
    )

    done = outcome.training
    assert done is not None
    assert done.status is Status.SUCCEEDED
    assert done.replicate_id == "r8a"
    assert done.version_id == "b" * 64
    assert done.submitted_at is not None
    assert done.started_at is not None
    assert done.completed_at is not None
    assert outcome.version_recorded
    versions = await pool.fetch("SELECT * FROM versions")
    assert [
        (v["owner"], v["name"], v["version_id"], v["training_id"]) for v in versions
    ] == [("acme", "faces", "b" * 64, training.id)]
    assert (
        versions[0]["weights_url"] == "https://replicate.delivery/r8a/trained_model.tar"
    )


async def test_repeated_webhook_id_changes_nothing(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "starting", "msg_1"), training.id)

    again = await apply(pool, webhook("r8a", "processing", "msg_1"))

    assert again.duplicate
    assert await pool.fetchval("SELECT count(*) FROM training_events") == 1
    current = await pool.fetchval(
        "SELECT status FROM trainings WHERE id = $1", training.id
    )
    assert current == "submitted"


async def test_late_processing_after_succeeded_changes_nothing_but_is_kept(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "succeeded", "msg_3"), training.id)

    late = await apply(pool, webhook("r8a", "processing", "msg_2"))

    assert late.training is not None
    assert late.training.status is Status.SUCCEEDED
    assert late.training.replicate_status == "succeeded"
    assert not late.moved
    applied = await pool.fetch(
        "SELECT webhook_id, applied FROM training_events ORDER BY id"
    )
    assert [(r["webhook_id"], r["applied"]) for r in applied] == [
        ("msg_3", True),
        ("msg_2", False),
    ]


async def test_two_success_reports_record_the_version_once(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "succeeded", "msg_1"), training.id)
    await apply(
        pool, Report(source="poll", training=replicate_training("r8a", "succeeded"))
    )

    assert await pool.fetchval("SELECT count(*) FROM versions") == 1


async def test_failure_keeps_replicates_error(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    message = (
        "Training failed. Failed to create trained image after successful training run."
    )

    outcome = await apply(
        pool, webhook("r8a", "failed", "msg_1", error=message), training.id
    )

    assert outcome.training is not None
    assert outcome.training.status is Status.FAILED
    assert outcome.training.error == message


async def test_webhook_for_unknown_training_is_recorded_without_one(
    pool: asyncpg.Pool,
) -> None:
    first = await apply(pool, webhook("r8-elsewhere", "succeeded", "msg_1"))
    second = await apply(pool, webhook("r8-elsewhere", "succeeded", "msg_1"))

    assert first.training is None
    assert not first.duplicate
    assert second.duplicate
    rows = await pool.fetch("SELECT training_id, replicate_id FROM training_events")
    assert [(r["training_id"], r["replicate_id"]) for r in rows] == [
        (None, "r8-elsewhere")
    ]


async def test_unknown_status_is_kept_without_moving_the_training(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "processing", "msg_1"), training.id)

    outcome = await apply(pool, webhook("r8a", "warming_up_gpu", "msg_2"))

    assert outcome.training is not None
    assert outcome.training.status is Status.RUNNING
    assert outcome.training.replicate_status == "warming_up_gpu"


async def test_first_report_with_a_replicate_id_settles_an_unanswered_create(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await pool.execute(
        "UPDATE trainings SET create_sent_at = now() WHERE id = $1", training.id
    )

    outcome = await apply(pool, webhook("r8a", "starting", "msg_1"), training.id)

    assert outcome.training is not None
    assert outcome.training.replicate_id == "r8a"
    assert outcome.training.status is Status.SUBMITTED
    assert not outcome.training.is_unsettled


async def test_a_second_replicate_training_is_not_adopted(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "starting", "msg_1"), training.id)

    outcome = await apply(pool, webhook("r8b", "processing", "msg_2"), training.id)

    assert outcome.training is not None
    assert outcome.training.replicate_id == "r8a"
    assert outcome.training.status is Status.SUBMITTED


async def test_version_in_another_destination_is_not_recorded(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    outcome = await apply(
        pool,
        webhook("r8a", "succeeded", "msg_1", destination="acme/other"),
        training.id,
    )

    assert outcome.training is not None
    assert outcome.training.status is Status.SUCCEEDED
    assert outcome.training.version_id is None
    assert await pool.fetchval("SELECT count(*) FROM versions") == 0


async def test_submitter_failure_fails_a_queued_training_with_the_message(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    outcome = await apply(
        pool,
        Report(
            source="submitter", status=Status.FAILED, error="input_images: required"
        ),
        training.id,
    )

    assert outcome.training is not None
    assert outcome.training.status is Status.FAILED
    assert outcome.training.error == "input_images: required"


async def test_poll_that_changes_nothing_leaves_no_event(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "processing", "msg_1"), training.id)

    await apply(
        pool, Report(source="poll", training=replicate_training("r8a", "processing"))
    )

    assert await pool.fetchval("SELECT count(*) FROM training_events") == 1


async def test_same_webhook_five_times_at_once_is_applied_once(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "processing", "msg_0"), training.id)

    outcomes = await asyncio.gather(
        *(apply(pool, webhook("r8a", "succeeded", "msg_1")) for _ in range(5))
    )

    assert sorted(o.duplicate for o in outcomes) == [False, True, True, True, True]
    assert sum(o.moved for o in outcomes) == 1
    assert await pool.fetchval("SELECT count(*) FROM versions") == 1
    assert await pool.fetchval("SELECT count(*) FROM training_events") == 2


async def apply_batch(pool: asyncpg.Pool, items: list[transitions.Item]) -> list:
    async with pool.acquire() as conn, conn.transaction():
        return await transitions.apply_reports(conn, items, policy=POLICY)


async def test_a_batch_applies_one_trainings_reports_in_arrival_order(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    outcomes = await apply_batch(
        pool,
        [
            transitions.Item(webhook("r8a", "starting", "msg_1"), training.id),
            transitions.Item(webhook("r8a", "processing", "msg_2")),
            transitions.Item(webhook("r8a", "succeeded", "msg_3")),
            transitions.Item(webhook("r8a", "processing", "msg_4")),
        ],
    )

    assert [o.moved for o in outcomes] == [True, True, True, False]
    assert outcomes[-1].training.status is Status.SUCCEEDED
    events = await pool.fetch(
        "SELECT webhook_id, applied FROM training_events ORDER BY id"
    )
    assert [(e["webhook_id"], e["applied"]) for e in events] == [
        ("msg_1", True),
        ("msg_2", True),
        ("msg_3", True),
        ("msg_4", False),
    ]
    assert await pool.fetchval("SELECT count(*) FROM versions") == 1


async def test_a_webhook_repeated_within_a_batch_counts_once(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    outcomes = await apply_batch(
        pool,
        [
            transitions.Item(webhook("r8a", "processing", "msg_1"), training.id),
            transitions.Item(webhook("r8a", "processing", "msg_1"), training.id),
            transitions.Item(webhook("r8-elsewhere", "processing", "msg_2")),
            transitions.Item(webhook("r8-elsewhere", "processing", "msg_2")),
        ],
    )

    assert [o.duplicate for o in outcomes] == [False, True, False, True]
    assert await pool.fetchval("SELECT count(*) FROM training_events") == 2


async def test_concurrent_batches_over_the_same_trainings_do_not_deadlock(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        made = [await queued_training(conn) for _ in range(6)]
    for n, record in enumerate(made):
        await apply(pool, webhook(f"r8{n}", "starting", f"msg_s{n}"), record.id)

    forward = [
        transitions.Item(webhook(f"r8{n}", "processing", f"msg_f{n}")) for n in range(6)
    ]
    backward = [
        transitions.Item(
            webhook(f"r8{n}", "succeeded", f"msg_b{n}", version_id=f"{n}" * 64)
        )
        for n in reversed(range(6))
    ]
    await asyncio.wait_for(
        asyncio.gather(apply_batch(pool, forward), apply_batch(pool, backward)),
        timeout=20,
    )

    assert await pool.fetchval("SELECT count(*) FROM versions") == 6
    statuses = await pool.fetch("SELECT DISTINCT status FROM trainings")
    assert [s["status"] for s in statuses] == ["succeeded"]


async def test_lock_free_write_refuses_whole_when_a_training_changed_since_read(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "starting", "msg_1"), training.id)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM trainings WHERE id = $1", training.id)
        batch = transitions._Batch(POLICY, [TrainingRecord.from_row(row)], set())
        batch.apply(transitions.Item(webhook("r8a", "succeeded", "msg_2")))
        # Another replica moves the training between this batch's read and write.
        await pool.execute(
            "UPDATE trainings SET updated_at = now() WHERE id = $1", training.id
        )

        with pytest.raises(transitions.WriteConflict):
            await batch.write(conn)

    assert await pool.fetchval("SELECT status FROM trainings") == "submitted"
    assert await pool.fetchval("SELECT count(*) FROM training_events") == 1
    assert await pool.fetchval("SELECT count(*) FROM versions") == 0


async def test_lock_free_write_refuses_when_its_new_event_was_recorded_meanwhile(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    await apply(pool, webhook("r8a", "starting", "msg_1"), training.id)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM trainings WHERE id = $1", training.id)
        batch = transitions._Batch(POLICY, [TrainingRecord.from_row(row)], set())
        batch.apply(transitions.Item(webhook("r8a", "processing", "msg_2")))
        # The same webhook, delivered to another replica, is recorded first.
        await apply(pool, webhook("r8a", "processing", "msg_2"))

        with pytest.raises(transitions.WriteConflict):
            await batch.write(conn)

    assert await pool.fetchval("SELECT count(*) FROM training_events") == 2


async def test_lock_free_batch_applies_like_a_locked_one(
    pool: asyncpg.Pool, training: TrainingRecord
) -> None:
    items = [
        transitions.Item(webhook("r8a", "starting", "msg_1"), training.id),
        transitions.Item(webhook("r8a", "processing", "msg_2")),
        transitions.Item(webhook("r8a", "succeeded", "msg_3")),
    ]
    async with pool.acquire() as conn:
        outcomes = await transitions.apply_reports(
            conn, items, policy=POLICY, lock=False
        )

    assert [o.moved for o in outcomes] == [True, True, True]
    assert await pool.fetchval("SELECT status FROM trainings") == "succeeded"
    assert await pool.fetchval("SELECT count(*) FROM versions") == 1
