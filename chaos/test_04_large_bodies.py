"""Scenario 4: webhook bodies of 10 MiB and 100 MiB."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import TuneyardProcess

from .conftest import DeploymentFactory, SimulatorFactory
from .support.results import ScenarioResult
from .support.tuneyard import Records, seed_submitted
from .support.webhooks import (
    RawAnswer,
    Webhook,
    raw_request,
    replicate_id,
    stream_request,
    training_body,
)

MIB = 1024 * 1024
LIMIT = 16 * MIB  # TUNEYARD_WEBHOOK_MAX_BYTES, left at its default
ACCEPTED_SIZE = 10 * MIB
REFUSED_SIZE = 100 * MIB
# A refused body may be buffered up to the limit before it is refused (a chunked
# one has no length to refuse it by); anything near 100 MiB would be a leak.
REFUSAL_GROWTH_LIMIT = 2 * LIMIT
CHUNK = MIB


def _memory(replica: TuneyardProcess) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak so far) of the process, in bytes."""
    assert replica.process is not None
    status = Path(f"/proc/{replica.process.pid}/status").read_text()
    found = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


class LargeBody:
    """A signed training webhook whose logs make it `size` bytes, produced in
    chunks so that not even the sender holds it whole."""

    def __init__(self, secret: str, training_id: str, size: int) -> None:
        self.prefix = (
            json.dumps({"id": training_id, "status": "processing", "output": None})[
                :-1
            ].encode()
            + b', "logs": "'
        )
        self.suffix = b'"}'
        self.size = size
        self.filler = size - len(self.prefix) - len(self.suffix)
        self.webhook_id = f"msg_large_{size}_{time.monotonic_ns()}"
        self.timestamp = str(int(time.time())).encode()
        key = base64.b64decode(secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{self.webhook_id}.".encode(), hashlib.sha256)
        mac.update(self.timestamp + b".")
        for chunk in self.chunks():
            mac.update(chunk)
        self.signature = b"v1," + base64.b64encode(mac.digest())

    def chunks(self) -> Iterator[bytes]:
        yield self.prefix
        left = self.filler
        line = b"step: loss=0.0123 " * (CHUNK // 18)
        while left > 0:
            piece = line[: min(left, len(line))]
            left -= len(piece)
            yield piece
        yield self.suffix

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"Content-Type", b"application/json"),
            (b"Connection", b"close"),
            (b"webhook-id", self.webhook_id.encode()),
            (b"webhook-timestamp", self.timestamp),
            (b"webhook-signature", self.signature),
        ]


@pytest.mark.scenario(
    4,
    "Webhook bodies of 10 MiB and 100 MiB",
    "A body up to TUNEYARD_WEBHOOK_MAX_BYTES (16 MiB by default: Replicate's "
    "bodies carry the training's logs) is taken whole; a larger one is refused "
    "413 before it is read, so an oversized or hostile body cannot exhaust a "
    "replica's memory.",
)
@pytest.mark.timeout(180)
async def test_webhook_bodies_past_the_limit_are_refused_without_being_held(
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    database: str,
    records: Records,
) -> None:
    """With the default limit of 16 MiB, a signed 10 MiB webhook is accepted and
    kept whole; a signed 100 MiB one is refused 413 problem+json, whether it
    announces its length or comes chunked, without the process's peak memory
    (VmHWM) growing by more than twice the limit; afterwards the service is
    healthy and takes webhooks as before."""
    simulator = await start_simulator()
    replica = await deploy(simulator).start()
    [training_id] = await seed_submitted(
        database, [replicate_id()], ["local/large"], poll_after=600
    )
    replicate = await records.fetchval(
        "SELECT replicate_id FROM trainings WHERE id = $1", training_id
    )
    # One small webhook first, so what the first request allocates is counted
    # in the baseline, not against the large bodies.
    assert (await _small(replica, simulator.secret, replicate)).status == 200
    baseline = _memory(replica)

    growth: dict[str, int] = {}
    refusals: dict[str, tuple[RawAnswer | None, int]] = {}
    for label, length in (("content-length", REFUSED_SIZE), ("chunked", None)):
        body = LargeBody(simulator.secret, replicate, REFUSED_SIZE)
        before = _memory(replica)
        refusals[label] = await stream_request(
            replica.port,
            "/webhooks/replicate",
            body.headers(),
            body.chunks(),
            length=length,
        )
        growth[f"100 MiB {label}"] = _memory(replica)["VmHWM"] - before["VmHWM"]

    accepted_body = LargeBody(simulator.secret, replicate, ACCEPTED_SIZE)
    before = _memory(replica)
    accepted, _ = await stream_request(
        replica.port,
        "/webhooks/replicate",
        accepted_body.headers(),
        accepted_body.chunks(),
        length=ACCEPTED_SIZE,
    )
    growth["10 MiB accepted"] = _memory(replica)["VmHWM"] - before["VmHWM"]
    after = _memory(replica)

    for label, (answer, _) in refusals.items():
        assert answer is not None, f"100 MiB {label}: no answer"
        assert answer.status == 413, (label, answer)
        assert answer.content_type == "application/problem+json", (label, answer)
        assert growth[f"100 MiB {label}"] < REFUSAL_GROWTH_LIMIT, growth
    assert accepted is not None
    assert accepted.status == 200, accepted
    kept_logs = await records.fetchval(
        "SELECT octet_length(body->>'logs') FROM training_events WHERE webhook_id = $1",
        accepted_body.webhook_id,
    )
    assert kept_logs == accepted_body.filler
    for probe in ("/healthz", "/readyz"):
        assert (await raw_request(replica.port, "GET", probe, [])).status == 200
    assert (await _small(replica, simulator.secret, replicate)).status == 200
    assert replica.exit_code is None

    sent_before_answer = {
        label: round(sent / MIB, 1) for label, (_, sent) in refusals.items()
    }
    scenario.done = (
        "signed webhooks POSTed as raw HTTP: 100 MiB with Content-Length, 100 MiB "
        "chunked, then 10 MiB; limit left at its default of 16 MiB; VmRSS and "
        "VmHWM read from /proc/PID/status around each"
    )
    scenario.sent = 5
    scenario.acknowledged = 3
    scenario.kept = await records.fetchval(
        "SELECT count(*) FROM training_events "
        "WHERE training_id = $1 AND source = 'webhook'",
        training_id,
    )
    scenario.duplicates = 0
    scenario.measure(
        limit="16 MiB (default): 10 MiB is under it and accepted",
        answers={label: answer.status for label, (answer, _) in refusals.items()}
        | {"10 MiB": accepted.status},
        peak_memory_growth_mib={k: round(v / MIB, 1) for k, v in growth.items()},
        body_sent_before_the_answer_mib=sent_before_answer,
        rss_mib={
            "baseline": round(baseline["VmRSS"] / MIB, 1),
            "after": round(after["VmRSS"] / MIB, 1),
        },
        healthy_after="yes: /healthz and /readyz 200, a webhook accepted",
    )


async def _small(replica: TuneyardProcess, secret: str, replicate: str) -> RawAnswer:
    body, headers = Webhook.of(
        training_body(replicate, "processing", n=0, destination="local/large")
    ).signed(secret)
    return await raw_request(
        replica.port,
        "POST",
        "/webhooks/replicate",
        [(k.encode(), v.encode()) for k, v in headers.items()],
        body,
    )
