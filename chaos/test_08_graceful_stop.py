"""Scenario 8: SIGTERM under load, as every rolling update sends it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from tests.support import databases
from tests.support.processes import TuneyardProcess
from tests.support.proxy import DatabaseProxy
from tests.support.simulator import wait_until

from .conftest import DeploymentFactory, SimulatorFactory
from .support.results import ScenarioResult
from .support.tuneyard import TRAINER, Records, seed_submitted
from .support.webhooks import Webhook, replicate_id, training_body

SUBMITTERS = 6
WEBHOOK_SENDERS = 4
DESTINATIONS = [f"local/sigterm-{i}" for i in range(4)]
# Requests count as in flight at the SIGTERM once every client has been waiting
# this long on its request (the database held, so none can finish).
IN_FLIGHT_FOR = 0.5
SHUTDOWN_TIMEOUT = 10
# Each client stops at the first request the replica does not answer, or here.
MAX_CALLS = 2000


@dataclass
class Call:
    kind: str
    ref: str
    started: float
    ended: float = 0.0
    status: int | None = None
    error: str | None = None


class Client:
    """A caller that sends one request after another until the replica is gone."""

    def __init__(self, kind: str, number: int) -> None:
        self.kind = kind
        self.number = number
        self.calls: list[Call] = []
        self.waiting_since: float | None = None

    async def run(self, send) -> None:
        for n in range(1, MAX_CALLS + 1):
            call = Call(self.kind, f"{self.kind}-{self.number}-{n}", time.monotonic())
            self.waiting_since = call.started
            try:
                call.status = await send(call.ref, n)
            except (aiohttp.ClientError, TimeoutError) as exc:
                call.error = type(exc).__name__
            call.ended = time.monotonic()
            self.waiting_since = None
            self.calls.append(call)
            if call.error is not None:
                return


@pytest.fixture
async def proxy(database: str) -> AsyncIterator[DatabaseProxy]:
    proxy = DatabaseProxy(databases.endpoint(database))
    await proxy.start()
    yield proxy
    proxy.release()
    await proxy.close()


@pytest.mark.scenario(
    8,
    "SIGTERM under load",
    "A rolling update or a scale-down loses nothing: on SIGTERM a replica stops "
    "taking connections, answers every request it already has, finishes the "
    "creates in its hands and exits 0, within TUNEYARD_SHUTDOWN_TIMEOUT.",
)
@pytest.mark.timeout(300)
async def test_sigterm_answers_requests_in_flight_and_exits_zero(
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    database: str,
    proxy: DatabaseProxy,
    records: Records,
) -> None:
    """Six clients submit trainings (each with an Idempotency-Key) and four send
    Replicate's webhooks, one request after another, to a replica. Its database
    is held for a moment so that every client has a request in flight, and the
    replica gets SIGTERM. Every request in flight is answered (202 or 200), none
    cut off; later ones find the port closed; the replica exits 0 within its
    shutdown timeout, leaving no create unsettled. Every training acknowledged
    is kept and, once another replica runs, succeeds on Replicate exactly once;
    every webhook acknowledged is recorded."""
    simulator = await start_simulator(training_seconds=2)
    deployment = deploy(simulator)
    seeded_rid = replicate_id()
    await seed_submitted(database, [seeded_rid], ["local/sigterm"], poll_after=600)
    proxied = databases.via(database, "127.0.0.1", proxy.port)
    replica = await deployment.start(
        DATABASE_URL=proxied, TUNEYARD_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT)
    )

    clients = [Client("training", i) for i in range(SUBMITTERS)]
    clients += [Client("webhook", i) for i in range(WEBHOOK_SENDERS)]
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as http:
        send = _senders(http, replica, simulator.secret, seeded_rid)
        running = [asyncio.create_task(c.run(send[c.kind])) for c in clients]
        try:
            await wait_until(
                lambda: sum(len(c.calls) for c in clients) >= 100,
                timeout=60,
                message="the load is under way",
            )
            proxy.hold()
            await wait_until(
                lambda: all(
                    c.waiting_since is not None
                    and time.monotonic() - c.waiting_since > IN_FLIGHT_FOR
                    for c in clients
                ),
                timeout=30,
                message="every client has a request in flight",
            )
            replica.signal(signal.SIGTERM)
            sigterm_at = time.monotonic()
            # The database is released only once the replica is shutting down and
            # has closed its port, with every client's request still in its hands.
            await wait_until(
                lambda: _shutting_down(replica),
                timeout=SHUTDOWN_TIMEOUT,
                message="the replica began its shutdown and closed its port",
            )
            closed_after = time.monotonic() - sigterm_at
            assert all(c.waiting_since is not None for c in clients)
            proxy.release()
            code = await replica.wait(timeout=SHUTDOWN_TIMEOUT + 20)
            exited_after = time.monotonic() - sigterm_at
            await asyncio.wait_for(asyncio.gather(*running), timeout=30)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    calls = [call for c in clients for call in c.calls]
    in_flight = [c for c in calls if c.started < sigterm_at < c.ended]
    before = [c for c in calls if c.ended < sigterm_at]
    after = [c for c in calls if c.started > sigterm_at]
    assert len(in_flight) == len(clients)
    assert [c.status for c in in_flight if c.error or c.status not in (200, 202)] == []
    assert all(c.status in (200, 202) for c in before)
    assert all(c.error is not None for c in after), "answered after the SIGTERM"
    assert code == 0, replica.output[-3000:]
    assert exited_after < SHUTDOWN_TIMEOUT
    assert await records.unsettled() == 0
    events = [e["event"] for e in replica.events()]
    assert events.index("shutdown_started") < events.index("server_stopped")

    accepted = [c.ref for c in calls if c.kind == "training" and c.status == 202]
    kept = await records.fetch(
        "SELECT id FROM trainings WHERE idempotency_key = ANY($1)", accepted
    )
    assert len(kept) == len(accepted), "an acknowledged training was lost"
    ids = [row["id"] for row in kept]
    await deployment.start()
    await records.wait_finished(ids, timeout=180, message="the acknowledged trainings")
    assert await records.statuses(ids) == {"succeeded": len(ids)}
    made = await simulator.trainings()
    rows = await records.trainings(ids)
    assert sorted(t["id"] for t in made) == sorted(
        r["replicate_id"] for r in rows.values()
    )
    hooks = [c.ref for c in calls if c.kind == "webhook" and c.status == 200]
    recorded = await records.events_by_webhook_id(hooks)
    assert set(recorded) == set(hooks)

    scenario.done = (
        f"{SUBMITTERS} clients submitting trainings and {WEBHOOK_SENDERS} sending "
        "webhooks to one replica, back to back; its database held until every "
        "client had a request in flight, then SIGTERM, the database released once "
        "the replica had closed its port; a second replica started afterwards to "
        "run what was accepted"
    )
    scenario.sent = len(calls)
    scenario.acknowledged = len(accepted) + len(hooks)
    scenario.kept = len(kept) + len(recorded)
    scenario.created = len(made)
    scenario.duplicates = len(made) - len(ids)
    scenario.measure(
        in_flight_at_sigterm=len(in_flight),
        in_flight_answered=dict(Counter(str(c.status or c.error) for c in in_flight)),
        after_sigterm=dict(Counter(str(c.error) for c in after)),
        exit_code=code,
        sigterm_to_port_closed_s=round(closed_after, 2),
        sigterm_to_exit_s=round(exited_after, 2),
        creates_left_unsettled=0,
    )


async def _shutting_down(replica: TuneyardProcess) -> bool:
    if "shutdown_started" not in {e["event"] for e in replica.events()}:
        return False
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", replica.port)
    except OSError:
        return True
    writer.close()
    return False


def _senders(
    http: aiohttp.ClientSession,
    replica: TuneyardProcess,
    secret: str,
    seeded_rid: str,
) -> dict:
    async def training(ref: str, n: int) -> int:
        body = {
            "destination": DESTINATIONS[n % len(DESTINATIONS)],
            "trainer": TRAINER,
            "input": {"input_images": f"https://example.com/{ref}.zip"},
        }
        headers = {**replica.headers, "Idempotency-Key": ref}
        async with http.post(
            f"{replica.url}/v1/trainings", json=body, headers=headers
        ) as response:
            await response.read()
            return response.status

    async def webhook(ref: str, n: int) -> int:
        message = Webhook(
            ref,
            Webhook.of(
                training_body(
                    seeded_rid, "processing", n=n, destination="local/sigterm"
                )
            ).body,
        )
        body, headers = message.signed(secret)
        async with http.post(
            f"{replica.url}/webhooks/replicate", data=body, headers=headers
        ) as response:
            await response.read()
            return response.status

    return {"training": training, "webhook": webhook}
