"""Scenario 2: rotating the webhook secrets, both ways, while replicas roll."""

from __future__ import annotations

import base64
import itertools
import json
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from tests.support.processes import TuneyardProcess
from tests.support.simulator import WebhookReceiver, wait_until

from .conftest import DeploymentFactory, SimulatorFactory
from .support.results import ScenarioResult
from .support.tuneyard import Caller, Deployment, Records, seed_submitted
from .support.webhooks import Webhook, replicate_id, training_body


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


OLD, NEW, STRANGER = _secret(), _secret(), _secret()
NAMES = {OLD: "old", NEW: "new", STRANGER: "stranger"}
# Each step rolls the replicas onto this REPLICATE_WEBHOOK_SECRET: the new secret
# is added beside the old, the old one dropped, and then the same way back.
ROTATION = [(OLD,), (NEW, OLD), (NEW,), (OLD, NEW), (OLD,)]
# How a sender may sign: with one secret, or with two signatures at once.
SIGNERS = [(OLD,), (NEW,), (STRANGER,), (OLD, NEW)]


@dataclass
class Sent:
    # Which point of the rotation it was sent at.
    checkpoint: int
    webhook_id: str
    replica_secrets: tuple[str, ...]
    signed_with: tuple[str, ...]
    status: int


@pytest.mark.scenario(
    "2a",
    "REPLICATE_WEBHOOK_SECRET rotated old → new,old → new and back, rolling",
    "Replicate's signing secret can be rotated with no webhook refused or lost: "
    "give the new secret beside the old, roll, let Replicate switch, drop the "
    "old. At every point each replica takes exactly the secrets it was given.",
)
@pytest.mark.timeout(240)
async def test_replicate_secret_rotation_accepts_secrets_in_force_only(
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    database: str,
    records: Records,
) -> None:
    """REPLICATE_WEBHOOK_SECRET goes old → "new,old" → "new" → "old,new" → "old",
    each step a rolling restart: a replica with the next setting starts, both
    serve, then the previous one stops (SIGTERM). At every point, webhooks
    signed with the old, the new, a stranger's, and both old and new secrets are
    sent to every running replica: a replica accepts (2xx) exactly those signed
    with a secret in its setting and refuses the others 401 problem+json. Every
    acknowledged webhook is recorded once; no refused one is."""
    simulator = await start_simulator()
    deployment = deploy(simulator)
    rid = replicate_id()
    await seed_submitted(database, [rid], ["local/rotation"], poll_after=600)

    sent: list[Sent] = []
    running: list[tuple[TuneyardProcess, tuple[str, ...]]] = []
    points = itertools.count()
    async with aiohttp.ClientSession() as http:
        for in_force in ROTATION:
            replica = await _start(deployment, in_force)
            running.append((replica, in_force))
            # Both the previous replica and the new one serve now.
            sent += await _send_to_all(http, running, rid, checkpoint=next(points))
            if len(running) > 1:
                previous, _ = running.pop(0)
                assert await deployment.stop(previous) == 0
                sent += await _send_to_all(http, running, rid, checkpoint=next(points))

    wrong = [
        s
        for s in sent
        if (s.status == 200) != bool(set(s.signed_with) & set(s.replica_secrets))
        or s.status not in (200, 401)
    ]
    assert not wrong, [
        (
            s.status,
            [NAMES[k] for k in s.replica_secrets],
            [NAMES[k] for k in s.signed_with],
        )
        for s in wrong
    ]
    # Following the procedure, Replicate always has a secret that every running
    # replica takes: nothing it sends is refused, mid-roll included.
    for checkpoint in {s.checkpoint for s in sent}:
        accepted_by_all = [
            signer
            for signer in ((OLD,), (NEW,))
            if all(
                s.status == 200
                for s in sent
                if s.checkpoint == checkpoint and s.signed_with == signer
            )
        ]
        assert accepted_by_all, f"no secret accepted everywhere at {checkpoint}"
    recorded = await records.events_by_webhook_id([s.webhook_id for s in sent])
    acknowledged = {s.webhook_id for s in sent if s.status == 200}
    assert set(recorded) == acknowledged
    assert set(recorded.values()) == {1}

    by_signer: dict[str, list[int]] = defaultdict(list)
    for s in sent:
        by_signer["+".join(NAMES[k] for k in s.signed_with)].append(s.status)
    scenario.done = (
        "5 settings of REPLICATE_WEBHOOK_SECRET (old; new,old; new; old,new; old), "
        "each rolled out by starting a replica and then stopping the previous one; "
        "at each point webhooks signed with old, new, a stranger's and old+new "
        "sent to every running replica"
    )
    scenario.sent = len(sent)
    scenario.acknowledged = len(acknowledged)
    scenario.kept = sum(recorded.values())
    scenario.duplicates = sum(n - 1 for n in recorded.values())
    scenario.measure(
        answers_by_signature={
            signer: f"{statuses.count(200)} accepted, {statuses.count(401)} refused 401"
            for signer, statuses in by_signer.items()
        },
        replicas_started=len(ROTATION),
        answers_not_as_expected=len(wrong),
        points_with_no_secret_accepted_by_every_replica=0,
    )


async def _start(deployment: Deployment, in_force: tuple[str, ...]) -> TuneyardProcess:
    return await deployment.start(
        REPLICATE_WEBHOOK_SECRET=",".join(in_force),
        TUNEYARD_RECONCILE_AFTER="600",
    )


async def _send_to_all(
    http: aiohttp.ClientSession,
    running: list[tuple[TuneyardProcess, tuple[str, ...]]],
    rid: str,
    *,
    checkpoint: int,
) -> list[Sent]:
    sent = []
    for replica, in_force in running:
        for signer in SIGNERS:
            webhook = Webhook.of(
                training_body(rid, "processing", n=0, destination="local/rotation")
            )
            # Every signature covers the one timestamp the headers carry.
            when = datetime.now(UTC)
            body, headers = webhook.signed(signer[0], when)
            signatures = [headers["webhook-signature"]]
            for other in signer[1:]:
                signatures.append(webhook.signed(other, when)[1]["webhook-signature"])
            headers["webhook-signature"] = " ".join(signatures)
            async with http.post(
                f"{replica.url}/webhooks/replicate", data=body, headers=headers
            ) as response:
                if response.status != 200:
                    assert response.content_type == "application/problem+json"
                sent.append(
                    Sent(
                        checkpoint,
                        webhook.webhook_id,
                        in_force,
                        signer,
                        response.status,
                    )
                )
    return sent


CALLBACK_ROTATION = [(OLD,), (NEW, OLD), (NEW,), (NEW, OLD), (OLD,)]


@pytest.mark.scenario(
    "2b",
    "TUNEYARD_WEBHOOK_SECRET rotated old → new,old → new and back, restarting",
    "Callers' receivers can move to a new secret at their own pace: while both "
    "are set, every callback carries a signature for each, so a receiver that "
    "knows either one verifies it; once one is dropped, it signs nothing.",
)
@pytest.mark.timeout(240)
async def test_callback_secret_rotation_signs_with_every_secret_in_force(
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    caller: Caller,
    records: Records,
) -> None:
    """TUNEYARD_WEBHOOK_SECRET goes old → "new,old" → "new" → "new,old" → "old",
    the service restarted at each step. A training with a callback URL is run at
    each step, and every callback it gets is delivered (nothing left pending or
    failed) and carries one signature per secret in force: a receiver that knows
    any secret in force verifies it with the Standard Webhooks library, and one
    that knows only a secret not in force cannot."""
    simulator = await start_simulator(training_seconds=0.5)
    deployment = deploy(simulator)
    checked: list[tuple[tuple[str, ...], str, str, bool]] = []
    ids = []
    async with WebhookReceiver() as receiver:
        replica: TuneyardProcess | None = None
        for step, in_force in enumerate(CALLBACK_ROTATION):
            if replica is not None:
                assert await deployment.stop(replica) == 0
            replica = await deployment.start(
                TUNEYARD_WEBHOOK_SECRET=",".join(in_force),
                TUNEYARD_CALLBACK_RETRY_SCHEDULE="1,1,1",
            )
            answer = await caller.submit(
                replica, "local/callbacks", step, callback_url=receiver.url
            )
            assert answer.status == 202, answer
            training_id = answer.body["id"]
            ids.append(training_id)
            await wait_until(
                lambda training_id=training_id: _succeeded_called_back(
                    receiver, training_id
                ),
                timeout=60,
                message=f"step {step}: the training's success was called back",
            )
            for hook in _callbacks(receiver, training_id):
                for secret in (OLD, NEW):
                    checked.append(
                        (
                            in_force,
                            NAMES[secret],
                            hook.webhook_id,
                            _verifies(secret, hook),
                        )
                    )
                entries = hook.headers["webhook-signature"].split()
                assert len(entries) == len(in_force)

    wrong = [c for c in checked if c[3] != (c[1] in [NAMES[k] for k in c[0]])]
    assert not wrong, wrong
    pending = await records.fetchval(
        "SELECT count(*) FROM notifications WHERE status <> 'delivered'"
    )
    assert pending == 0
    delivered = await records.fetchval("SELECT count(*) FROM notifications")
    received = {hook.webhook_id for hook in receiver.received if hook.answered == 200}
    assert len(received) == delivered

    scenario.done = (
        "5 settings of TUNEYARD_WEBHOOK_SECRET (old; new,old; new; new,old; old), "
        "the service restarted between them; one training with a callback URL at "
        "each; every callback checked against both secrets with the Standard "
        "Webhooks library"
    )
    scenario.sent = delivered
    scenario.acknowledged = len(received)
    scenario.kept = delivered
    scenario.created = len(await simulator.trainings())
    scenario.duplicates = 0
    scenario.measure(
        callbacks_verified=sum(c[3] for c in checked),
        callbacks_refused_by_a_retired_secret=sum(not c[3] for c in checked),
        checks_not_as_expected=len(wrong),
        callbacks_not_delivered=pending,
    )


def _callbacks(receiver: WebhookReceiver, training_id: str) -> list:
    return [
        hook
        for hook in receiver.received
        if hook.answered == 200
        and json.loads(hook.body)["training"]["id"] == training_id
    ]


def _succeeded_called_back(receiver: WebhookReceiver, training_id: str) -> bool:
    return any(
        json.loads(hook.body)["type"] == "training.succeeded"
        for hook in _callbacks(receiver, training_id)
    )


def _verifies(secret: str, hook) -> bool:
    try:
        Verifier(secret).verify(hook.body, hook.headers)
    except WebhookVerificationError:
        return False
    return True
