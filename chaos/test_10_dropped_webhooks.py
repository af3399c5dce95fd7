"""Scenario 10: Replicate's webhooks never arrive."""

from __future__ import annotations

from collections import Counter

import pytest

from .conftest import DeploymentFactory, SimulatorFactory
from .support.results import ScenarioResult
from .support.tuneyard import Caller, Records, metrics

TRAININGS = 30
DESTINATIONS = [f"local/dropped-{i}" for i in range(3)]
RECONCILE_AFTER = 2


@pytest.mark.scenario(
    10,
    "Every webhook dropped",
    "Webhooks that never come (a misconfigured TUNEYARD_PUBLIC_URL or ingress, "
    "Replicate giving up its retries) only delay trainings: the reconciler polls "
    "each quiet training after TUNEYARD_RECONCILE_AFTER and records its end and "
    "version as a webhook would have.",
)
@pytest.mark.timeout(240)
async def test_dropped_webhooks_are_made_up_for_by_the_reconciler(
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    caller: Caller,
    records: Records,
) -> None:
    """With every webhook dropped (webhook_drop_rate 1.0) and
    TUNEYARD_RECONCILE_AFTER at 2 s, 30 trainings submitted to two replicas all
    end succeeded, each with exactly one Replicate training and the version that
    training made, learnt by polling: not one webhook reached Tuneyard."""
    simulator = await start_simulator(training_seconds=2, webhook_drop_rate=1.0)
    deployment = deploy(simulator)
    replicas = [
        await deployment.start(TUNEYARD_RECONCILE_AFTER=str(RECONCILE_AFTER))
        for _ in range(2)
    ]

    ids = await caller.submit_all(replicas, DESTINATIONS, TRAININGS)
    took = await records.wait_finished(
        ids, timeout=180, message="every training finished by polling"
    )

    assert await records.statuses(ids) == {"succeeded": TRAININGS}
    made = await simulator.trainings()
    rows = await records.trainings(ids)
    assert len(made) == TRAININGS
    assert {t["id"] for t in made} == {r["replicate_id"] for r in rows.values()}
    produced = {t["id"]: t["output"]["version"].partition(":")[2] for t in made}
    versions = await records.versions_by_training(ids)
    assert versions == {i: [produced[rows[i]["replicate_id"]]] for i in ids}
    deliveries = await simulator.webhooks()
    assert deliveries, "the simulator made no webhooks to drop"
    assert {d["fault"] for d in deliveries} == {"dropped"}
    sources = await records.fetch(
        "SELECT source, status FROM training_events "
        "WHERE training_id = ANY($1) AND applied",
        ids,
    )
    assert not [e for e in sources if e["source"] == "webhook"]
    finished_by = Counter(e["source"] for e in sources if e["status"] == "succeeded")
    assert finished_by == {"poll": TRAININGS}

    polls: Counter[str] = Counter()
    for replica in replicas:
        for (name, labels), value in (await metrics(replica)).items():
            if name == "tuneyard_reconciler_actions_total":
                label = dict(labels)
                polls[f"{label['action']} {label['outcome']}"] += int(value)
    scenario.done = (
        f"webhook_drop_rate 1.0 on the simulator (2 s trainings); {TRAININGS} "
        f"trainings submitted to 2 replicas with TUNEYARD_RECONCILE_AFTER="
        f"{RECONCILE_AFTER}"
    )
    scenario.sent = TRAININGS
    scenario.acknowledged = len(ids)
    scenario.kept = len(rows)
    scenario.created = len(made)
    scenario.duplicates = len(made) - TRAININGS
    scenario.recovered(
        took, "from the submissions to the last training finished by polling"
    )
    scenario.measure(
        webhooks_dropped=len(deliveries),
        webhooks_received=0,
        finished_by_poll=finished_by["poll"],
        reconciler_actions=dict(polls),
        all_finished_after_submission_s=round(took, 1),
    )
