"""Verifying Standard Webhooks: one test per way a webhook can fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from service.webhooks.verify import (
    SignatureMismatch,
    WebhookRejected,
    WebhookVerifier,
)

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"id":"r8t1","status":"succeeded"}'
NOW = 1_800_000_000


def signed(
    body: bytes = BODY,
    *,
    secret: str = SECRET,
    timestamp: int = NOW,
    msg_id: str = "msg_1",
) -> dict[str, str]:
    """Headers as a Standard Webhooks sender makes them (the reference library)."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_webhook_signed_by_the_reference_library_verifies() -> None:
    verified = WebhookVerifier([SECRET]).verify(signed(), BODY, now=NOW)

    assert verified.webhook_id == "msg_1"
    assert verified.timestamp == NOW


def test_any_of_several_secrets_verifies_while_rotating() -> None:
    verifier = WebhookVerifier([OTHER_SECRET, SECRET])

    assert verifier.verify(signed(secret=SECRET), BODY, now=NOW)
    assert verifier.verify(signed(secret=OTHER_SECRET), BODY, now=NOW)


def test_one_matching_signature_among_several_verifies() -> None:
    headers = signed()
    other = signed(secret=OTHER_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"v2,abc {other} {headers['webhook-signature']}"

    assert WebhookVerifier([SECRET]).verify(headers, BODY, now=NOW)


def test_timestamp_within_tolerance_either_way_verifies() -> None:
    verifier = WebhookVerifier([SECRET])

    assert verifier.verify(signed(timestamp=NOW - 299), BODY, now=NOW)
    assert verifier.verify(signed(timestamp=NOW + 299), BODY, now=NOW)


@pytest.mark.parametrize(
    "missing", ["webhook-id", "webhook-timestamp", "webhook-signature"]
)
def test_missing_header_is_rejected_by_name(missing: str) -> None:
    headers = signed()
    del headers[missing]

    with pytest.raises(WebhookRejected, match=f"the {missing} header is missing"):
        WebhookVerifier([SECRET]).verify(headers, BODY, now=NOW)


@pytest.mark.parametrize("timestamp", ["abc", "-5", "1.5", "9" * 20, "1e9"])
def test_timestamp_that_is_not_unix_seconds_is_rejected(timestamp: str) -> None:
    headers = signed()
    headers["webhook-timestamp"] = timestamp

    with pytest.raises(WebhookRejected, match="must be Unix seconds"):
        WebhookVerifier([SECRET]).verify(headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        # Unix seconds in Arabic-Indic digits and in superscripts: str.isdigit()
        # says yes to both.
        (
            "webhook-timestamp",
            str(NOW).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
        ),
        ("webhook-timestamp", "¹⁸⁰⁰⁰⁰⁰⁰⁰⁰"),
        # Bytes that are not UTF-8, as aiohttp hands them over.
        ("webhook-id", "msg_\udcff\udcfe"),
        ("webhook-id", "msg_\x01"),
    ],
)
def test_header_that_is_not_printable_ascii_is_rejected(
    header: str, value: str
) -> None:
    headers = signed()
    headers[header] = value

    with pytest.raises(WebhookRejected, match="must be printable ASCII") as raised:
        WebhookVerifier([SECRET]).verify(headers, BODY, now=NOW)

    assert raised.value.reason == "malformed_header"


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_timestamp_outside_tolerance_is_rejected(offset: int) -> None:
    headers = signed(timestamp=NOW + offset)

    with pytest.raises(WebhookRejected, match="more than 5 minutes from now"):
        WebhookVerifier([SECRET]).verify(headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("garbage", "entries must be version,signature"),
        ("v2,abc", "has no v1 signature"),
        ("v1,not*base64!", "is not base64"),
    ],
)
def test_malformed_signature_header_is_rejected(signature: str, message: str) -> None:
    headers = signed()
    headers["webhook-signature"] = signature

    with pytest.raises(WebhookRejected, match=message):
        WebhookVerifier([SECRET]).verify(headers, BODY, now=NOW)


def test_signature_by_another_secret_is_a_mismatch() -> None:
    with pytest.raises(SignatureMismatch) as raised:
        WebhookVerifier([SECRET]).verify(signed(secret=OTHER_SECRET), BODY, now=NOW)

    assert raised.value.status == 401


def test_changed_body_is_a_mismatch() -> None:
    with pytest.raises(SignatureMismatch):
        WebhookVerifier([SECRET]).verify(
            signed(), BODY.replace(b"r8t1", b"r8t2"), now=NOW
        )


def test_changed_webhook_id_is_a_mismatch() -> None:
    headers = signed()
    headers["webhook-id"] = "msg_2"

    with pytest.raises(SignatureMismatch):
        WebhookVerifier([SECRET]).verify(headers, BODY, now=NOW)


def test_body_that_is_not_utf8_is_verified_as_bytes() -> None:
    body = b"\xff\xfe not text"
    digest = hmac.new(b"k" * 32, b"msg_1.%d." % NOW + body, hashlib.sha256).digest()
    headers = signed()
    headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode()

    assert WebhookVerifier([SECRET]).verify(headers, body, now=NOW)


def test_verification_uses_the_current_time_by_default() -> None:
    headers = signed(timestamp=int(time.time()))

    assert WebhookVerifier([SECRET]).verify(headers, BODY)
