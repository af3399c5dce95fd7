"""The outbox's claim: each notification to one claimer, a training's in order."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import asyncpg

from service.store import notifications

from ..support.factories import queued_training


async def fill(pool: asyncpg.Pool, trainings: int, per_training: int) -> list[str]:
    ids = []
    async with pool.acquire() as conn:
        for _ in range(trainings):
            training = await queued_training(conn)
            for n in range(per_training):
                ids.append(
                    await notifications.enqueue(
                        conn,
                        training_id=training.id,
                        caller="tests",
                        event_type=f"training.step{n}",
                        payload=json.dumps({"n": n}),
                        callback_url="http://127.0.0.1:9/",
                    )
                )
    return ids


async def claim_all(pool: asyncpg.Pool, claimers: int) -> list[str]:
    """Claim with several workers at once until nothing is due."""
    claimed: list[str] = []

    async def worker() -> None:
        while True:
            async with pool.acquire() as conn:
                batch = await notifications.claim(conn, 3, 60)
            if not batch:
                return
            claimed.extend(n.id for n in batch)

    await asyncio.gather(*(worker() for _ in range(claimers)))
    return claimed


async def test_concurrent_claimers_never_take_the_same_notification(
    pool: asyncpg.Pool,
) -> None:
    ids = await fill(pool, trainings=40, per_training=1)

    claimed = await claim_all(pool, claimers=6)

    assert Counter(claimed) == Counter(ids)


async def test_only_the_earliest_pending_notification_of_a_training_is_claimed(
    pool: asyncpg.Pool,
) -> None:
    first, second, third = await fill(pool, trainings=1, per_training=3)

    claimed = await claim_all(pool, claimers=3)

    assert claimed == [first]
    await pool.execute(
        "UPDATE notifications SET status = 'delivered' WHERE id = $1", first
    )
    assert await claim_all(pool, claimers=3) == [second]
    assert third not in claimed
