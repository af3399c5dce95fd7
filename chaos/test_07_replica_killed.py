"""Scenario 7: one of three replicas is killed with 500 trainings in flight."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from tests.support.simulator import wait_until

from .conftest import DeploymentFactory, SimulatorFactory
from .support.results import ScenarioResult
from .support.tuneyard import Caller, Records, metrics

TRAININGS = 500
DESTINATIONS = [f"local/kill-{i}" for i in range(10)]
# The replica is killed once every training is accepted and at least this many
# are on Replicate: the others are queued, being created, or running then.
KILL_AFTER = 100
# Generous limits on both sides, so the run is paced by the work itself. The
# longer Replicate timeout (a lease of 15 s) suits a loaded two-core machine.
SETTINGS = {
    "TUNEYARD_REPLICATE_RATE_LIMIT": "100000",
    "TUNEYARD_REPLICATE_CREATE_RATE_LIMIT": "100000",
    "TUNEYARD_REPLICATE_TIMEOUT": "5",
    "TUNEYARD_SETTLE_WINDOW": "12",
    "TUNEYARD_RECONCILE_AFTER": "5",
}


@pytest.mark.scenario(
    7,
    "SIGKILL of one of three replicas with 500 trainings in flight",
    "A replica can die at any instant (OOM kill, node loss) without losing or "
    "doubling a training: what it held is taken over by the others once its "
    "claims lapse (3x TUNEYARD_REPLICATE_TIMEOUT), creates it left unanswered "
    "are settled before anything is sent again, and no paid Replicate training "
    "is ever made twice.",
)
@pytest.mark.timeout(600)
async def test_replica_killed_mid_flight_leaves_every_training_done_once(
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    caller: Caller,
    records: Records,
) -> None:
    """500 trainings are submitted spread over three replicas, against a
    Replicate whose trainings take 1.5 s. Once all are accepted and at least 100
    are on Replicate, one replica is killed with SIGKILL. All 500 end
    succeeded; the simulator has exactly 500 trainings, each Tuneyard's
    Replicate training and no other; every training has exactly one version,
    the one Replicate made; no create is left unsettled."""
    simulator = await start_simulator(training_seconds=1.5)
    deployment = deploy(simulator)
    replicas = [await deployment.start(**SETTINGS) for _ in range(3)]
    victim, survivors = replicas[1], [replicas[0], replicas[2]]

    ids = await caller.submit_all(replicas, DESTINATIONS, TRAININGS)
    await wait_until(
        lambda: records.fetchval(
            "SELECT count(*) >= $1 FROM trainings WHERE replicate_id IS NOT NULL",
            KILL_AFTER,
        ),
        timeout=120,
        interval=0.05,
        message=f"{KILL_AFTER} trainings on Replicate",
    )
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert await victim.wait() == -signal.SIGKILL
    at_kill = await records.fetch(
        "SELECT status, create_sent_at IS NOT NULL AND replicate_id IS NULL "
        "AS unsettled FROM trainings"
    )

    await records.wait_finished(
        ids, timeout=420, message="all 500 trainings finished after the kill"
    )
    recovery = time.monotonic() - killed_at

    assert await records.statuses(ids) == {"succeeded": TRAININGS}
    made = await simulator.trainings()
    rows = await records.trainings(ids)
    assert len(made) == TRAININGS, f"{len(made)} trainings on Replicate"
    assert {t["id"] for t in made} == {r["replicate_id"] for r in rows.values()}
    produced = {t["id"]: t["output"]["version"].partition(":")[2] for t in made}
    versions = await records.versions_by_training(ids)
    assert versions == {i: [produced[rows[i]["replicate_id"]]] for i in ids}
    assert await records.unsettled() == 0
    assert [r.exit_code for r in survivors] == [None, None]

    outcomes: Counter[str] = Counter()
    for replica in survivors:
        for (name, labels), value in (await metrics(replica)).items():
            if name == "tuneyard_submissions_total":
                outcomes[dict(labels)["outcome"]] += int(value)
    deliveries = await simulator.webhooks()
    to_victim = [d for d in deliveries if f":{victim.port}/" in d["url"]]
    states = Counter("unsettled" if r["unsettled"] else r["status"] for r in at_kill)
    scenario.done = (
        f"{TRAININGS} trainings submitted over 3 replicas (10 destinations; "
        "Replicate's clock 1.5 s); one replica SIGKILLed once all were accepted "
        f"and at least {KILL_AFTER} were on Replicate"
    )
    scenario.sent = TRAININGS
    scenario.acknowledged = len(ids)
    scenario.kept = len(rows)
    scenario.created = len(made)
    scenario.duplicates = (
        len(made) - TRAININGS + sum(len(v) - 1 for v in versions.values())
    )
    scenario.recovered(
        recovery, "from the SIGKILL to the last of the 500 trainings finished"
    )
    scenario.measure(
        trainings_at_the_kill=dict(states),
        survivors_submission_outcomes=dict(outcomes),
        webhooks_sent_to_the_killed_replica=len(to_victim),
        of_which_unanswered=sum(d["status_code"] is None for d in to_victim),
        all_finished_after_the_kill_s=round(recovery, 1),
        versions_per_training=1,
    )
