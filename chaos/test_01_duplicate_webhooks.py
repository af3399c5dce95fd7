"""Scenario 1: Replicate delivers one webhook several times."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.support.simulator import WebhookReceiver, wait_until
from tests.support.webhooks import signed_webhook

from .conftest import DeploymentFactory, SimulatorFactory
from .support.results import ScenarioResult
from .support.tuneyard import Caller, Records, metrics, sample

CALLBACK_SECRET = "whsec_" + base64.b64encode(b"chaos-duplicates-callbacks!!").decode()
COPIES = 5

# Everything that makes up a training's state, for before/after comparisons.
SNAPSHOT = {
    "training": "SELECT * FROM trainings WHERE id = $1",
    "events": "SELECT * FROM training_events WHERE training_id = $1 ORDER BY id",
    "versions": "SELECT * FROM versions WHERE training_id = $1",
    "notifications": "SELECT id, type, payload FROM notifications "
    "WHERE training_id = $1 ORDER BY seq",
}


@pytest.mark.scenario(
    1,
    "The same webhook delivered 5 times at once, and again a day later",
    "Replicate's retries and duplicates can never record a training's success "
    "twice, make two versions or call a caller back twice: the webhook-id is the "
    "dedupe, and it does not expire.",
)
@pytest.mark.timeout(180)
async def test_webhook_delivered_five_times_at_once_is_applied_once(
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    caller: Caller,
    records: Records,
) -> None:
    """Five concurrent deliveries of one terminal webhook (same webhook-id, same
    bytes) record one event, one transition and one version, and queue one
    callback; all five are acknowledged 2xx, four of them as duplicates. The same
    webhook redelivered a day later (same webhook-id, a new timestamp and
    signature) is acknowledged as a duplicate and changes nothing."""
    # Webhooks are dropped and the training hangs until finished through the
    # admin API, so only the deliveries this scenario makes tell Tuneyard.
    simulator = await start_simulator(training_hang_rate=1.0, webhook_drop_rate=1.0)
    deployment = deploy(simulator)
    async with WebhookReceiver() as receiver:
        replica = await deployment.start(
            TUNEYARD_RECONCILE_AFTER="600",
            TUNEYARD_WEBHOOK_SECRET=CALLBACK_SECRET,
            TUNEYARD_CALLBACK_RETRY_SCHEDULE="1,1,1",
        )
        accepted = await caller.submit(
            replica, "local/duplicates", 0, callback_url=receiver.url
        )
        assert accepted.status == 202, accepted
        training_id = accepted.body["id"]
        replicate_id = await wait_until(
            lambda: records.fetchval(
                "SELECT replicate_id FROM trainings WHERE id = $1", training_id
            ),
            timeout=60,
            message="the training was created on Replicate",
        )
        await simulator.finish_training(replicate_id, "succeeded")
        completed = await simulator.api_get(f"/v1/trainings/{replicate_id}")
        # Signed a minute ago, so the redelivery below carries another timestamp.
        body, headers = signed_webhook(
            simulator.secret,
            completed,
            timestamp=datetime.now(UTC) - timedelta(minutes=1),
        )
        url = f"{replica.url}/webhooks/replicate?training_id={training_id}"

        answers = await asyncio.gather(
            *(_post(url, body, headers) for _ in range(COPIES))
        )

        assert [status for status, _ in answers] == [200] * COPIES, answers
        flags = sorted(receipt["duplicate"] for _, receipt in answers)
        assert flags == [False] + [True] * (COPIES - 1), answers
        await wait_until(
            lambda: _delivered(receiver, "training.succeeded"),
            timeout=30,
            message="the success was called back",
        )

        webhook_id = headers["webhook-id"]
        events = await records.fetch(
            "SELECT applied, status FROM training_events WHERE webhook_id = $1",
            webhook_id,
        )
        assert [(e["applied"], e["status"]) for e in events] == [(True, "succeeded")]
        training = await records.fetch(SNAPSHOT["training"], training_id)
        assert training[0]["status"] == "succeeded"
        produced = completed["output"]["version"].partition(":")[2]
        versions = await records.versions_by_training([training_id])
        assert versions == {training_id: [produced]}
        successes = await records.fetchval(
            "SELECT count(*) FROM notifications "
            "WHERE training_id = $1 AND type = 'training.succeeded'",
            training_id,
        )
        assert successes == 1
        samples = await metrics(replica)
        transitions = sample(
            samples,
            "tuneyard_training_transitions_total",
            status="succeeded",
            source="webhook",
        )
        duplicates = sample(samples, "tuneyard_webhooks_duplicates_total")
        assert (transitions, duplicates) == (1, COPIES - 1)

        # "A day later": everything recorded is made a day older, then the
        # webhook comes again, signed afresh as every resend is.
        await _age_by_a_day(records, training_id)
        before = await _snapshot(records, training_id)
        body, headers = signed_webhook(
            simulator.secret, completed, webhook_id=webhook_id
        )

        status, receipt = await _post(url, body, headers)

        assert (status, receipt["duplicate"]) == (200, True)
        # Nothing changed, the outbox included: no second callback can follow.
        assert await _snapshot(records, training_id) == before
        called_back = [
            json.loads(hook.body)["type"]
            for hook in receiver.received
            if hook.answered == 200
        ]
        assert called_back.count("training.succeeded") == 1, called_back

    [made] = await simulator.trainings()
    scenario.done = (
        f"one terminal webhook POSTed {COPIES}x concurrently (same webhook-id and "
        "bytes); then redelivered with the same webhook-id, a new timestamp and "
        "signature after every stored row was aged by a day"
    )
    scenario.sent = COPIES + 1
    scenario.acknowledged = sum(s == 200 for s, _ in answers) + (status == 200)
    scenario.kept = len(events)
    scenario.created = 1 if made["id"] == replicate_id else 0
    scenario.duplicates = len(versions[training_id]) - 1 + successes - 1
    scenario.measure(
        answers=f"{COPIES}x 200: 1 new, {COPIES - 1} marked duplicate; "
        "redelivery 200, marked duplicate",
        transitions_to_succeeded=int(transitions),
        versions=len(versions[training_id]),
        callbacks_training_succeeded=called_back.count("training.succeeded"),
        state_changed_by_redelivery="no",
    )


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    # A connection of its own each, as separate deliveries would arrive.
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def _delivered(receiver: WebhookReceiver, event_type: str) -> bool:
    return any(
        json.loads(hook.body)["type"] == event_type and hook.answered == 200
        for hook in receiver.received
    )


async def _age_by_a_day(records: Records, training_id: str) -> None:
    for statement in (
        "UPDATE training_events SET received_at = received_at - interval '1 day' "
        "WHERE training_id = $1",
        "UPDATE trainings SET created_at = created_at - interval '1 day', "
        "updated_at = updated_at - interval '1 day', "
        "submitted_at = submitted_at - interval '1 day', "
        "started_at = started_at - interval '1 day', "
        "completed_at = completed_at - interval '1 day', "
        "last_event_at = last_event_at - interval '1 day' WHERE id = $1",
        "UPDATE versions SET recorded_at = recorded_at - interval '1 day' "
        "WHERE training_id = $1",
        "UPDATE notifications SET created_at = created_at - interval '1 day', "
        "delivered_at = delivered_at - interval '1 day' WHERE training_id = $1",
    ):
        await records.fetch(statement, training_id)


async def _snapshot(records: Records, training_id: str) -> dict[str, list[Any]]:
    return {
        name: [dict(row) for row in await records.fetch(query, training_id)]
        for name, query in SNAPSHOT.items()
    }
