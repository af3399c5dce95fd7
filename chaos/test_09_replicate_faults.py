"""Scenario 9: Replicate throttles everything for a minute, then fails
everything for two."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from tests.support.simulator import wait_until

from .conftest import DeploymentFactory, SimulatorFactory
from .support import bugs
from .support.bugs import Bug
from .support.results import ScenarioResult
from .support.simulator import SimulatorProcess
from .support.tuneyard import Caller, Records, metrics

TRAININGS = 20
DESTINATIONS = [f"local/storm-{i}" for i in range(4)]
STORM_SECONDS = 60
ERROR_SECONDS = 120
FAULTS = {
    "throttled": {"throttle_storm_seconds": STORM_SECONDS},
    "failing": {"error_rate": 1.0},
}
DONE = {
    "throttled": f"a 429 storm for {STORM_SECONDS} s",
    "failing": f"error_rate 1.0 (500, 502, 503) for {ERROR_SECONDS} s",
}

# Known failures of the promise, each written up for the lead (see support.bugs).
CREATED_TWICE = "trainings created twice on Replicate"
KNOWN_BUGS: dict[str, dict[str, Bug]] = {"throttled": {}, "failing": {}}


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(
            "throttled",
            marks=pytest.mark.scenario(
                "9a",
                "Replicate answers every request 429 for 60 s",
                "When Replicate throttles the account, trainings wait in the queue "
                "(honouring Retry-After) and go out once it lets them; nothing is "
                "refused to callers, nothing created twice.",
            ),
        ),
        pytest.param(
            "failing",
            marks=pytest.mark.scenario(
                "9b",
                "Replicate answers every request 5xx for 2 minutes",
                "When Replicate is down, trainings wait and go out once it is back. "
                "A create answered 5xx may have been made, so it is settled "
                "(looked for on Replicate) before it is sent again: an outage never "
                "turns one training into two paid ones.",
            ),
        ),
    ],
)
@pytest.mark.timeout(420)
async def test_replicate_faults_delay_trainings_and_double_none(
    fault: str,
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    caller: Caller,
    records: Records,
) -> None:
    """Two replicas run a training into each destination first, so the
    destinations exist and what follows exercises the creates. Then Replicate
    answers every API request 429 for 60 s (a storm), or 500/502/503 for 2
    minutes; 20 trainings are submitted during it, half at its start and half
    midway. All are accepted (202); none reaches Replicate while the fault lasts;
    once it ends all succeed, each with exactly one Replicate training and one
    version. The simulator's stats count the 429s or 5xx it answered."""
    simulator = await start_simulator(training_seconds=1)
    deployment = deploy(simulator)
    replicas = [await deployment.start() for _ in range(2)]
    warm = await caller.submit_all(replicas, DESTINATIONS, len(DESTINATIONS))
    await records.wait_finished(warm, timeout=60, message="the warm-up trainings")
    before = len(await simulator.trainings())

    await simulator.set_faults(**FAULTS[fault])
    began = time.monotonic()
    half = TRAININGS // 2
    ids = await _submit(caller, replicas, range(half))
    duration = STORM_SECONDS if fault == "throttled" else ERROR_SECONDS
    await _until(began + duration / 2)
    ids += await _submit(caller, replicas, range(half, TRAININGS))
    # Just before the fault ends: nothing has got through.
    await _until(began + duration - 3)
    waiting = await records.statuses(ids)
    made_during = len(await simulator.trainings()) - before
    if fault == "failing":
        await simulator.set_faults(error_rate=0.0)
    else:
        await wait_until(_storm_over(simulator), timeout=30, message="the storm ended")
    recovery = await records.wait_finished(
        ids, timeout=180, message="the trainings submitted during the fault"
    )

    assert waiting == {"queued": TRAININGS}, waiting
    assert made_during == 0
    assert await records.statuses(ids) == {"succeeded": TRAININGS}
    made = await simulator.trainings()
    rows = await records.trainings(ids + warm)
    recorded = {r["replicate_id"] for r in rows.values()}
    assert recorded <= {t["id"] for t in made}, (
        "a recorded training is not on Replicate"
    )
    versions = await records.versions_by_training(ids)
    assert all(len(versions.get(i, [])) == 1 for i in ids), versions
    extra = [t for t in made if t["id"] not in recorded]

    stats = await simulator.stats()
    answered: Counter[str] = Counter()
    for replica in replicas:
        for (name, labels), value in (await metrics(replica)).items():
            if name == "tuneyard_replicate_requests_total":
                answered[dict(labels)["status"]] += int(value)
    scenario.done = (
        f"{DONE[fault]} on the simulator; {TRAININGS} trainings submitted to 2 "
        "replicas during it (half at the start, half midway)"
    )
    scenario.sent = TRAININGS
    scenario.acknowledged = len(ids)
    scenario.kept = len(ids)
    scenario.created = len(made) - len(warm)
    scenario.duplicates = len(extra)
    scenario.recovered(
        recovery, "from the fault's end to the last training submitted in it finished"
    )
    scenario.measure(
        simulator_answered_429=stats["storm_throttled"] + stats["throttled"],
        simulator_answered_5xx=stats["errors_injected"],
        created_while_the_fault_lasted=made_during,
        all_finished_after_the_fault_s=round(recovery, 1),
        tuneyard_calls_to_replicate_by_answer=dict(sorted(answered.items())),
        replicate_trainings_not_recorded=len(extra),
    )
    failing = {CREATED_TWICE: f"{len(extra)} extra"} if extra else {}
    # Whether a throttled retry and another replica's create meet is timing.
    bugs.settle(scenario, KNOWN_BUGS[fault], failing, intermittent=[CREATED_TWICE])


async def _submit(caller: Caller, replicas: list, numbers: range) -> list[str]:
    ids = []
    for n in numbers:
        answer = await caller.submit(
            replicas[n % 2], DESTINATIONS[n % len(DESTINATIONS)], 1000 + n
        )
        assert answer.status == 202, answer
        ids.append(answer.body["id"])
    return ids


async def _until(moment: float) -> None:
    """Let the fault run on: its length is the scenario's, not a condition."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


def _storm_over(simulator: SimulatorProcess):
    async def over() -> bool:
        return not (await simulator.faults())["throttle_storm"]

    return over
