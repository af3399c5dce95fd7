"""Scenario 6: the network to PostgreSQL fails for 30 seconds.

Two ways a network fails: it refuses (the connections are reset and new ones
refused, as when the server's host is down: DatabaseProxy.cut), or it goes
silent (packets are dropped and nothing answers, as in a partition:
DatabaseProxy.hold). The promise is the same for both.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.support import databases
from tests.support.processes import TuneyardProcess
from tests.support.proxy import DatabaseProxy
from tests.support.simulator import wait_until

from .conftest import DeploymentFactory, SimulatorFactory
from .support import bugs
from .support.results import ScenarioResult
from .support.tuneyard import Answer, Caller, Records
from .support.webhooks import Webhook, training_body

TRAININGS = 20
OUTAGE_SECONDS = 30.0
PROBE_EVERY = 1.0
# A request must be answered within this while the database is away: a connect
# attempt gives up after 5 s (service.store.pool.CONNECT_TIMEOUT) and readiness
# after 3 s (service.api.health.READY_TIMEOUT); anything slower is a hang that
# only a caller's own timeout ends. Probes give up a little later.
ANSWER_WITHIN = 8.0
PROBE_TIMEOUT = ANSWER_WITHIN + 2
NO_ANSWER = 0
DESTINATIONS = [f"local/outage-{i}" for i in range(4)]
EXPECTED = {
    "GET /healthz": {200},
    "GET /readyz": {503},
    "GET /v1/trainings/{id}": {503},
    "POST /v1/trainings": {503},
    "POST /webhooks/replicate": {503},
}

KNOWN_BUGS = {
    "silent": {},
    "refusing": {},
}


@pytest.fixture
async def proxy(database: str) -> AsyncIterator[DatabaseProxy]:
    proxy = DatabaseProxy(databases.endpoint(database))
    await proxy.start()
    yield proxy
    proxy.release()
    await proxy.close()


@pytest.mark.parametrize(
    "network",
    [
        pytest.param(
            "refusing",
            marks=pytest.mark.scenario(
                6,
                "The database unreachable for 30 s (connections cut and refused)",
                "While PostgreSQL is unreachable, Tuneyard says so at once (503 "
                "problems with Retry-After; /readyz failing so the load balancer "
                "drains it; /healthz passing so nothing restarts it) and accepts "
                "nothing it cannot keep; when the network comes back it recovers "
                "on its own and finishes the work in flight.",
            ),
        ),
        pytest.param(
            "silent",
            marks=pytest.mark.scenario(
                "6b",
                "The database silent for 30 s (packets held, nothing refused)",
                "The same promise when the network drops packets instead of "
                "refusing connections, as in a partition: only timeouts can tell "
                "Tuneyard the database is gone.",
            ),
        ),
    ],
)
@pytest.mark.timeout(360)
async def test_database_outage_answers_503_then_recovers_without_a_restart(
    network: str,
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    database: str,
    proxy: DatabaseProxy,
    caller: Caller,
    records: Records,
) -> None:
    """With 20 trainings accepted and running on Replicate, the network between
    two replicas and PostgreSQL fails for 30 s, then is restored. During the
    outage every request is answered within 8 s: the API, a new training and
    Replicate's webhook with 503 problem+json, /readyz with 503, /healthz with
    200. After the restore both replicas are ready again without a restart, the
    20 trainings finish with one Replicate training and one version each,
    nothing refused during the outage was kept, and new trainings are accepted
    and finish."""
    simulator = await start_simulator(training_seconds=10)
    proxied = databases.via(database, "127.0.0.1", proxy.port)
    deployment = deploy(simulator, database_url=proxied)
    replicas = [await deployment.start() for _ in range(2)]
    pids = [r.process.pid for r in replicas if r.process]
    ids = await caller.submit_all(replicas, DESTINATIONS, TRAININGS)
    await wait_until(
        lambda: records.fetchval(
            "SELECT count(*) = $2 FROM trainings WHERE id = ANY($1) "
            "AND replicate_id IS NOT NULL",
            ids,
            TRAININGS,
        ),
        timeout=60,
        message="every training was created on Replicate",
    )
    rows = await records.trainings(ids)
    running = await records.statuses(ids)
    assert not any(running[s] for s in ("succeeded", "failed", "canceled")), running

    if network == "refusing":
        await proxy.cut()
    else:
        proxy.hold()
    began = time.monotonic()
    probes: list[tuple[str, Probe]] = []
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
    ) as http:
        probe = Caller(http)
        while time.monotonic() - began < OUTAGE_SECONDS:
            replica = replicas[len(probes) % 2]
            probes += await _probe(probe, replica, rows[ids[0]], simulator.secret)
            await asyncio.sleep(PROBE_EVERY)
    await proxy.restore()
    proxy.release()
    restored = time.monotonic()
    await asyncio.gather(*(_wait_ready(caller, r) for r in replicas))
    ready_after = time.monotonic() - restored

    finish_time = await records.wait_finished(
        ids, timeout=180, message="the trainings in flight during the outage finished"
    )
    late = await caller.submit_all(replicas, DESTINATIONS, 4)
    await records.wait_finished(late, timeout=120, message="trainings after it")

    # Everything kept: the trainings accepted, and any submission made during the
    # outage that was never answered but committed (its caller would retry with
    # its Idempotency-Key and get it back). One answered 503 must not be kept.
    kept = [row["id"] for row in await records.fetch("SELECT id FROM trainings")]
    assert set(ids + late) <= set(kept)
    refused_keys = [
        a.key for k, a in probes if k == "POST /v1/trainings" and a.status == 503
    ]
    kept_refused = await records.fetchval(
        "SELECT count(*) FROM trainings WHERE idempotency_key = ANY($1)", refused_keys
    )
    assert kept_refused == 0, "a training refused during the outage was kept"
    await records.wait_finished(kept, timeout=120, message="every kept training")
    assert await records.statuses(kept) == {"succeeded": len(kept)}
    made = await simulator.trainings()
    kept_rows = await records.trainings(kept)
    assert sorted(t["id"] for t in made) == sorted(
        r["replicate_id"] for r in kept_rows.values()
    )
    versions = await records.versions_by_training(kept)
    assert all(len(versions.get(i, [])) == 1 for i in kept), versions
    assert [r.process.pid for r in replicas if r.process] == pids
    assert [r.exit_code for r in replicas] == [None, None]

    by_kind: dict[str, Counter[int]] = {}
    for kind, answer in probes:
        by_kind.setdefault(kind, Counter())[answer.status] += 1
    failing = {}
    for kind, answers in by_kind.items():
        wrong = [
            a
            for k, a in probes
            if k == kind
            and (
                a.status not in EXPECTED[kind]
                or a.seconds >= ANSWER_WITHIN
                or (a.status == 503 and a.body.get("status") != 503)
            )
        ]
        if wrong:
            failing[kind] = _describe(answers, wrong)
    completed = Counter(
        str(d["status_code"] or "no answer")
        for d in await simulator.webhooks()
        if d["event"] == "completed"
    )
    slowest = max(answer.seconds for _, answer in probes)

    scenario.done = (
        f"{TRAININGS} trainings accepted and running on Replicate (10 s clock); the "
        f"network from 2 replicas to PostgreSQL {_how(network)} for 30 s, probing "
        "the API, a submission, a signed webhook, /readyz and /healthz every "
        "second (each probe given up after 10 s); then restored; then 4 more "
        "trainings"
    )
    scenario.sent = TRAININGS + len(late)
    scenario.acknowledged = TRAININGS + len(late)
    scenario.kept = len(kept)
    scenario.created = len(made)
    scenario.duplicates = len(made) - len({t["id"] for t in made})
    scenario.recovered(
        ready_after, "from the network's restore to both replicas' /readyz 200"
    )
    scenario.measure(
        answers_during_outage={
            k: {("no answer" if s == NO_ANSWER else str(s)): n for s, n in v.items()}
            for k, v in by_kind.items()
        },
        slowest_answer_during_outage_s=round(slowest, 2),
        ready_again_after_restore_s=round(ready_after, 2),
        trainings_finished_after_restore_s=round(finish_time, 1),
        replicate_completed_webhook_attempts=dict(completed),
        replicas_restarted=0,
        unanswered_submissions_kept=len(kept) - len(ids) - len(late),
    )
    # Readiness answers 503 in time on a fresh connection and hangs on a held one:
    # which it gets in one outage is a matter of timing.
    bugs.settle(scenario, KNOWN_BUGS[network], failing, intermittent=["GET /readyz"])


def _how(network: str) -> str:
    if network == "refusing":
        return "cut (connections reset, new ones refused)"
    return "silent (connections held open, no byte forwarded either way)"


def _describe(answers: Counter[int], wrong: list[Answer]) -> str:
    statuses = ", ".join(
        f"{n}x {'no answer' if s == NO_ANSWER else s}" for s, n in answers.items()
    )
    return f"{statuses}; slowest {max(a.seconds for a in wrong):.1f}s"


@dataclass(frozen=True)
class Probe(Answer):
    # The Idempotency-Key of the probe's submission.
    key: str


async def _probe(
    caller: Caller, replica: TuneyardProcess, training: Any, secret: str
) -> list[tuple[str, Probe]]:
    """One of each request a deployment gets, with its answer or its absence."""
    webhook = Webhook.of(
        training_body(
            training["replicate_id"], "processing", n=0, destination=DESTINATIONS[0]
        )
    )
    body, headers = webhook.signed(secret)
    key = f"outage-probe-{time.monotonic_ns()}"
    requests: list[tuple[str, str, str, dict[str, Any]]] = [
        ("GET /healthz", "GET", "/healthz", {}),
        ("GET /readyz", "GET", "/readyz", {}),
        (
            "GET /v1/trainings/{id}",
            "GET",
            f"/v1/trainings/{training['id']}",
            {"headers": replica.headers},
        ),
        (
            "POST /v1/trainings",
            "POST",
            "/v1/trainings",
            {
                "headers": {**replica.headers, "Idempotency-Key": key},
                "json": {
                    "destination": DESTINATIONS[0],
                    "trainer": training["trainer"],
                    "input": {"input_images": "https://example.com/outage.zip"},
                },
            },
        ),
        (
            "POST /webhooks/replicate",
            "POST",
            "/webhooks/replicate",
            {"data": body, "headers": headers},
        ),
    ]
    answers = await asyncio.gather(
        *(
            _answer(caller, method, f"{replica.url}{path}", kwargs)
            for _, method, path, kwargs in requests
        )
    )
    return [
        (kind, Probe(answer.status, answer.body, answer.seconds, key))
        for (kind, *_), answer in zip(requests, answers, strict=True)
    ]


async def _answer(caller: Caller, method: str, url: str, kwargs: dict) -> Answer:
    started = time.monotonic()
    try:
        return await caller.request(method, url, **kwargs)
    except (aiohttp.ClientError, TimeoutError):
        return Answer(NO_ANSWER, None, time.monotonic() - started)


async def _wait_ready(caller: Caller, replica: TuneyardProcess) -> None:
    async def ready() -> bool:
        answer = await caller.request("GET", f"{replica.url}/readyz")
        return answer.status == 200

    await wait_until(ready, timeout=60, interval=0.1, message=f"{replica.url} ready")
