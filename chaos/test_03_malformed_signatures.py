"""Scenario 3: webhooks whose signature headers are malformed, in every shape."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.support.webhooks import signed_webhook

from .conftest import DeploymentFactory, SimulatorFactory
from .support import bugs
from .support.bugs import Bug
from .support.results import ScenarioResult
from .support.tuneyard import Records
from .support.webhooks import RawAnswer, raw_request, replicate_id

Headers = dict[str, bytes]
# A case turns valid headers (and the secret) into the headers it sends.
Case = Callable[[Headers, str], Headers]

BODY = json.dumps({"id": replicate_id(), "status": "processing"}).encode()
PATH = "/webhooks/replicate"

# Known failures of the promise, each written up for the lead (see support.bugs).
KNOWN_BUGS: dict[str, Bug] = {}


def _set(name: str, value: bytes) -> Case:
    return lambda headers, secret: {**headers, name: value}


def _drop(*names: str) -> Case:
    return lambda headers, secret: {k: v for k, v in headers.items() if k not in names}


def _signed_at(offset: int, digits: str = "0123456789") -> Case:
    """Correctly signed, at a timestamp `offset` seconds from now, written with
    these ten digits."""

    def case(headers: Headers, secret: str) -> Headers:
        written = str(int(time.time()) + offset).translate(
            str.maketrans("0123456789", digits)
        )
        stamp = written.encode()
        return {
            **headers,
            "webhook-timestamp": stamp,
            "webhook-signature": _sign(secret, headers["webhook-id"], stamp, BODY),
        }

    return case


def _sign(secret: str, webhook_id: bytes, stamp: bytes, body: bytes) -> bytes:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, webhook_id + b"." + stamp + b"." + body, hashlib.sha256)
    return b"v1," + base64.b64encode(digest.digest())


def _random_signature() -> bytes:
    return b"v1," + base64.b64encode(secrets.token_bytes(32))


def _other_secret(headers: Headers, secret: str) -> Headers:
    stranger = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return {
        **headers,
        "webhook-signature": _sign(
            stranger, headers["webhook-id"], headers["webhook-timestamp"], BODY
        ),
    }


def _truncated(headers: Headers, secret: str) -> Headers:
    return {**headers, "webhook-signature": headers["webhook-signature"][:-8]}


def _other_id(headers: Headers, secret: str) -> Headers:
    # A signature made for another message, replayed under this one's id.
    return {**headers, "webhook-id": b"msg_" + secrets.token_hex(16).encode()}


def _valid_among_many(headers: Headers, secret: str) -> Headers:
    entries = [b"v2,AAAA", *(_random_signature() for _ in range(60))]
    entries.append(headers["webhook-signature"])
    return {**headers, "webhook-signature": b" ".join(entries)}


CONTROLS: dict[str, Case] = {
    "valid": lambda headers, secret: headers,
    "valid after a v2 entry and 60 wrong v1 entries": _valid_among_many,
}

CASES: dict[str, Case] = {
    # Missing and empty
    "no webhook-signature": _drop("webhook-signature"),
    "no webhook-id": _drop("webhook-id"),
    "no webhook-timestamp": _drop("webhook-timestamp"),
    "no webhook headers at all": _drop(
        "webhook-id", "webhook-timestamp", "webhook-signature"
    ),
    "signature: empty": _set("webhook-signature", b""),
    "signature: spaces only": _set("webhook-signature", b"   "),
    "webhook-id: empty": _set("webhook-id", b""),
    "timestamp: empty": _set("webhook-timestamp", b""),
    # The signature's shape
    "signature: no comma": _set("webhook-signature", b"v1" + b"A" * 44),
    "signature: a comma alone": _set("webhook-signature", b","),
    "signature: version alone": _set("webhook-signature", b"v1,"),
    "signature: unknown version only": _set(
        "webhook-signature", b"v2," + base64.b64encode(secrets.token_bytes(32))
    ),
    "signature: upper-case V1": lambda h, s: {
        **h,
        "webhook-signature": h["webhook-signature"].replace(b"v1,", b"V1,"),
    },
    "signature: not base64": _set("webhook-signature", b"v1,!!!!not-base64!!!!"),
    "signature: bad base64 padding": _set("webhook-signature", b"v1,abc"),
    "signature: base64 of 3 bytes": _set("webhook-signature", b"v1,AAAA"),
    "signature: truncated": _truncated,
    "signature: made with another secret": _other_secret,
    "signature: of another webhook-id": _other_id,
    "signature: 60 wrong v1 entries": lambda h, s: {
        **h,
        "webhook-signature": b" ".join(_random_signature() for _ in range(60)),
    },
    "signature: 500 entries of unknown versions": _set(
        "webhook-signature", b" ".join(b"v9,x" for _ in range(500))
    ),
    "signature: 6 KB, past Tuneyard's 4 KB": _set(
        "webhook-signature", b"v1," + b"A" * 6000
    ),
    "signature: 100 KB, past the parser's line limit": _set(
        "webhook-signature", b"v1," + b"A" * 100_000
    ),
    "signature: non-ASCII UTF-8": _set("webhook-signature", "v1,ÄÖÜß=".encode()),
    "signature: invalid UTF-8": _set("webhook-signature", b"v1,\xff\xfe\xfd"),
    "signature: control character": _set("webhook-signature", b"v1,\x01AAAA"),
    "signature: repeated header, valid one second": lambda h, s: {
        **h,
        "webhook-signature": _random_signature(),
        "webhook-signature ": h["webhook-signature"],
    },
    # The webhook-id
    "webhook-id: non-ASCII UTF-8": _set("webhook-id", "msg_ünïcödé".encode()),
    "webhook-id: invalid UTF-8": _set("webhook-id", b"msg_\xff\xfe"),
    "webhook-id: 5 KB": _set("webhook-id", b"msg_" + b"a" * 5000),
    # The timestamp
    "timestamp: not a number": _set("webhook-timestamp", b"yesterday"),
    "timestamp: negative": _set("webhook-timestamp", b"-1700000000"),
    "timestamp: 20 digits": _set("webhook-timestamp", b"9" * 20),
    "timestamp: milliseconds": _set(
        "webhook-timestamp", str(int(time.time() * 1000)).encode()
    ),
    "timestamp: fractional": _set("webhook-timestamp", f"{time.time():.3f}".encode()),
    "timestamp: hexadecimal": _set("webhook-timestamp", hex(int(time.time())).encode()),
    "timestamp: superscript digits": _set("webhook-timestamp", "¹⁷⁰⁰".encode()),
    "timestamp: zero": _set("webhook-timestamp", b"0"),
    "timestamp: 6 minutes old, correctly signed": _signed_at(-360),
    "timestamp: 6 minutes ahead, correctly signed": _signed_at(360),
    "timestamp: a day old, correctly signed": _signed_at(-86_400),
    "timestamp: Arabic-Indic digits for now, correctly signed": _signed_at(
        0, "٠١٢٣٤٥٦٧٨٩"
    ),
}


def _shape(answer: RawAnswer) -> str:
    return f"{answer.status} {answer.content_type or '(no content type)'}"


@pytest.mark.scenario(
    3,
    "Malformed signature headers of every shape",
    "No header a sender can craft makes Tuneyard answer 5xx or record anything: "
    "a 5xx would make Replicate retry forever and page the on-call for input "
    "that is simply wrong. Each refusal says which check failed.",
)
@pytest.mark.timeout(120)
async def test_malformed_signature_headers_are_refused_4xx_never_5xx(
    scenario: ScenarioResult,
    start_simulator: SimulatorFactory,
    deploy: DeploymentFactory,
    records: Records,
) -> None:
    """Every malformed shape of webhook-id, webhook-timestamp and
    webhook-signature (missing, empty, no comma, unknown version, bad base64,
    huge, many entries, non-ASCII, invalid UTF-8, a timestamp non-numeric,
    negative, huge, stale or in the future) is refused with a 4xx
    application/problem+json that names the check that failed (its `reason`),
    never a 5xx; nothing of theirs is recorded; the valid controls are accepted
    and the service stays healthy."""
    simulator = await start_simulator()
    replica = await deploy(simulator).start(TUNEYARD_WORKERS="false")

    answers: dict[str, RawAnswer] = {}
    webhook_ids: dict[str, str] = {}
    for name, case in {**CONTROLS, **CASES}.items():
        _, valid = signed_webhook(simulator.secret, BODY)
        headers = {k: v.encode() for k, v in valid.items() if k.startswith("webhook")}
        sent = case(headers, simulator.secret)
        webhook_ids[name] = sent.get("webhook-id", b"").decode(errors="replace")
        answers[name] = await raw_request(
            replica.port,
            "POST",
            PATH,
            [(b"Content-Type", b"application/json")]
            + [(k.strip().encode(), v) for k, v in sent.items()],
            BODY,
        )
    health = await raw_request(replica.port, "GET", "/readyz", [])

    for name in CONTROLS:
        assert answers[name].status == 200, (name, answers[name])
    failing = {
        name: _shape(answers[name])
        for name in CASES
        if not (
            400 <= answers[name].status < 500
            and answers[name].content_type == "application/problem+json"
        )
    }
    reasons = Counter(
        json.loads(answers[name].body).get("reason")
        for name in CASES
        if name not in failing
    )
    assert None not in reasons, f"a refusal does not say which check failed: {reasons}"
    kept = await records.fetchval("SELECT count(*) FROM training_events")
    recorded = await records.events_by_webhook_id(list(webhook_ids.values()))
    refused = [name for name in answers if answers[name].status >= 400]
    assert not [name for name in refused if recorded[webhook_ids[name]]], (
        "a refused webhook was recorded"
    )
    assert health.status == 200
    assert replica.exit_code is None

    statuses = Counter(answers[name].status for name in CASES)
    scenario.done = (
        f"{len(CASES)} malformed webhooks (raw HTTP, byte for byte) and "
        f"{len(CONTROLS)} valid controls, against one replica"
    )
    scenario.sent = len(CASES) + len(CONTROLS)
    scenario.acknowledged = sum(answers[name].status < 300 for name in answers)
    scenario.kept = kept
    scenario.duplicates = 0
    scenario.measure(
        answers=", ".join(f"{n}x {s}" for s, n in sorted(statuses.items())),
        problem_json=sum(
            answers[name].content_type == "application/problem+json" for name in CASES
        ),
        answered_5xx=sum(answers[name].status >= 500 for name in CASES),
        reasons_given=dict(reasons.most_common()),
        cases={name: _shape(answers[name]) for name in CASES},
    )
    bugs.settle(scenario, KNOWN_BUGS, failing)
