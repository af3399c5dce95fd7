"""Tuneyard as the scenarios run it: `tuneyard serve` replicas, its API as a
caller uses it, and its database as the scenarios check it.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from service.domain.ids import new_id
from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
)
from tests.support.processes import TuneyardProcess, free_port
from tests.support.simulator import wait_until

TRAINER = f"{FLUX_DEV_LORA_TRAINER}:{FLUX_DEV_LORA_TRAINER_VERSION}"
TERMINAL = ("succeeded", "failed", "canceled")

# Short clocks, so quiet trainings are polled and unanswered creates settled in
# seconds rather than minutes. The claim lease is three Replicate timeouts, and
# the settle window stays above two of them, as the README asks.
FAST = {
    "TUNEYARD_WORKER_POLL_INTERVAL": "0.5",
    "TUNEYARD_RECONCILE_AFTER": "3",
    "TUNEYARD_SETTLE_WINDOW": "8",
    "TUNEYARD_REPLICATE_TIMEOUT": "3",
    "TUNEYARD_SHUTDOWN_TIMEOUT": "10",
    "TUNEYARD_LOG_LEVEL": "info",
}


def training_input(n: int) -> dict[str, Any]:
    """A distinct input per training, as real callers' datasets are."""
    return {"input_images": f"https://example.com/chaos/set-{n}.zip", "steps": 10}


class Deployment:
    """Replicas of `tuneyard serve` against one database and one Replicate.

    Authentication is on, as in production: every replica carries the headers of
    the scenario's caller. Whatever is still running is stopped by `close()`.
    """

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        *,
        replicate_url: str,
        replicate_token: str,
        replicate_secret: str,
        caller_token: str,
    ) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.settings = {
            "DATABASE_URL": database_url,
            "REPLICATE_BASE_URL": replicate_url,
            "REPLICATE_API_TOKEN": replicate_token,
            "REPLICATE_WEBHOOK_SECRET": replicate_secret,
            **FAST,
        }
        self.headers = {"Authorization": f"Bearer {caller_token}"}
        self.replicas: list[TuneyardProcess] = []

    async def start(self, **settings: str) -> TuneyardProcess:
        """Start one replica and wait until it answers /healthz."""
        port = settings.pop("TUNEYARD_PORT", str(free_port()))
        values = {
            **self.settings,
            "TUNEYARD_PORT": port,
            "TUNEYARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
            **settings,
        }
        replica = TuneyardProcess(self.workdir, "serve", **values).start()
        replica.headers = dict(self.headers)
        self.replicas.append(replica)
        await replica.wait_healthy(timeout=60)
        return replica

    async def stop(self, replica: TuneyardProcess, timeout: float = 60) -> int:
        """SIGTERM, and the exit code once it has stopped."""
        if replica.exit_code is None:
            replica.signal(signal.SIGTERM)
        return await replica.wait(timeout=timeout)

    async def close(self) -> None:
        for replica in self.replicas:
            if replica.exit_code is None:
                replica.signal(signal.SIGTERM)
        for replica in self.replicas:
            try:
                await replica.wait(timeout=30)
            except AssertionError:
                replica.kill()


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    seconds: float


class Caller:
    """A service calling Tuneyard's API, over one client session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.http = session

    async def submit(
        self,
        replica: TuneyardProcess,
        destination: str,
        n: int,
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Answer:
        body: dict[str, Any] = {
            "destination": destination,
            "trainer": TRAINER,
            "input": training_input(n),
        }
        if callback_url is not None:
            body["callback_url"] = callback_url
        headers = dict(replica.headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return await self.request(
            "POST", f"{replica.url}/v1/trainings", json=body, headers=headers
        )

    async def submit_all(
        self,
        replicas: list[TuneyardProcess],
        destinations: list[str],
        count: int,
        *,
        concurrency: int = 16,
    ) -> list[str]:
        """Submit `count` trainings spread over replicas and destinations; each
        must be accepted (202). Returns their ids in submission order."""
        gate = asyncio.Semaphore(concurrency)

        async def one(n: int) -> str:
            async with gate:
                answer = await self.submit(
                    replicas[n % len(replicas)], destinations[n % len(destinations)], n
                )
            assert answer.status == 202, answer
            return answer.body["id"]

        return list(await asyncio.gather(*(one(n) for n in range(count))))

    async def request(self, method: str, url: str, **kwargs: Any) -> Answer:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self.http.request(method, url, **kwargs) as response:
            text = await response.text()
            try:
                body: Any = await response.json(content_type=None)
            except ValueError:
                body = text
            return Answer(response.status, body, loop.time() - started)


class Records:
    """Tuneyard's database, read directly: what was really kept."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def fetchval(self, query: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    async def statuses(self, ids: list[str]) -> Counter[str]:
        rows = await self.fetch("SELECT status FROM trainings WHERE id = ANY($1)", ids)
        return Counter(row["status"] for row in rows)

    async def trainings(self, ids: list[str]) -> dict[str, asyncpg.Record]:
        rows = await self.fetch("SELECT * FROM trainings WHERE id = ANY($1)", ids)
        return {row["id"]: row for row in rows}

    async def wait_finished(
        self, ids: list[str], *, timeout: float, message: str = ""
    ) -> float:
        """Wait until every training has a terminal status; returns the seconds
        it took. The failure names how many were where."""
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def finished() -> bool:
            counts = await self.statuses(ids)
            return sum(counts[s] for s in TERMINAL) == len(ids)

        try:
            await wait_until(finished, timeout=timeout, interval=0.5, message=message)
        except AssertionError:
            counts = dict(await self.statuses(ids))
            raise AssertionError(
                f"{message or 'trainings finished'} not met within {timeout}s: "
                f"{len(ids)} trainings, statuses {counts}"
            ) from None
        return loop.time() - started

    async def events_by_webhook_id(self, webhook_ids: list[str]) -> Counter[str]:
        rows = await self.fetch(
            "SELECT webhook_id FROM training_events WHERE webhook_id = ANY($1)",
            webhook_ids,
        )
        return Counter(row["webhook_id"] for row in rows)

    async def versions_by_training(self, ids: list[str]) -> dict[str, list[str]]:
        rows = await self.fetch(
            "SELECT training_id, version_id FROM versions WHERE training_id = ANY($1)",
            ids,
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row["training_id"], []).append(row["version_id"])
        return found

    async def unsettled(self) -> int:
        """Creates sent whose outcome Tuneyard does not know."""
        return await self.fetchval(
            "SELECT count(*) FROM trainings "
            "WHERE create_sent_at IS NOT NULL AND replicate_id IS NULL"
        )


SEED_DESTINATION = """
INSERT INTO destinations (owner, name) VALUES ($1, $2)
ON CONFLICT (owner, name) DO NOTHING
"""
# A training as the submitter leaves it once Replicate accepted the create: on
# Replicate (submitted, with its Replicate id) and due for a poll only once
# `poll_after` seconds pass without news.
SEED_TRAINING = """
INSERT INTO trainings (
    id, caller, request_hash, destination_owner, destination_name, trainer, input,
    status, replicate_status, replicate_id, attempts, submitted_at, last_event_at,
    next_attempt_at
)
VALUES (
    $1, 'chaos', $2, $3, $4, $5, $6::jsonb, 'submitted', 'starting', $7, 1, now(),
    now(), now() + make_interval(secs => $8)
)
"""


async def seed_submitted(
    database_url: str,
    replicate_ids: list[str],
    destinations: list[str],
    *,
    poll_after: float,
) -> list[str]:
    """Trainings already on Replicate, one for each Replicate id, spread over
    the destinations; returns Tuneyard's ids in the same order.

    Written with SQL against the schema (the migrations), not with the service's
    own functions, so the suite does not lean on code being rewritten; a queued
    row is never visible, so no submitter takes one.
    """
    ids = [new_id("trn") for _ in replicate_ids]
    rows = []
    for n, (training_id, replicate_id) in enumerate(
        zip(ids, replicate_ids, strict=True)
    ):
        owner, name = destinations[n % len(destinations)].split("/")
        rows.append(
            (
                training_id,
                f"seed-{n}",
                owner,
                name,
                TRAINER,
                json.dumps(training_input(n)),
                replicate_id,
                poll_after,
            )
        )
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            for destination in destinations:
                await conn.execute(SEED_DESTINATION, *destination.split("/"))
            await conn.executemany(SEED_TRAINING, rows)
    finally:
        await conn.close()
    return ids


async def metrics(replica: TuneyardProcess) -> dict[tuple[str, frozenset], float]:
    """The replica's Prometheus samples, by name and labels."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{replica.url}/metrics", headers=replica.ops_headers) as response,
    ):
        assert response.status == 200, await response.text()
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(
    samples: dict[tuple[str, frozenset], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)
