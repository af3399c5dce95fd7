"""Verifying Standard Webhooks signatures over the raw request body.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 with
the bytes of the secret after `whsec_` (base64). The body is used exactly as
received: re-serialised JSON would not match. Several secrets may be valid at
once while one is being rotated; a signature made with any of them passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import ProblemError

# How far a webhook's timestamp may be from now, either way, as Standard Webhooks
# and Svix use. Older messages are refused so a captured one cannot be replayed.
TIMESTAMP_TOLERANCE = 5 * 60

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


class WebhookRejected(ProblemError):
    """The webhook cannot be trusted; the message says which check failed, and
    `reason` names it for metrics and for the sender."""

    status = 400
    title = "Webhook rejected"
    type = "/problems/webhook-rejected"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason


class SignatureMismatch(WebhookRejected):
    """No signature matches any of the configured secrets."""

    status = 401


@dataclass(frozen=True)
class VerifiedWebhook:
    webhook_id: str
    timestamp: int


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret."""
    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret must be whsec_ and base64") from None
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


class WebhookVerifier:
    """Checks Standard Webhooks headers and signatures against known secrets."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is needed")
        self._keys = [decode_secret(secret) for secret in secrets]

    def verify(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> VerifiedWebhook:
        webhook_id = _header(headers, "webhook-id")
        raw_timestamp = _header(headers, "webhook-timestamp")
        raw_signatures = _header(headers, "webhook-signature")

        if not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
            raise WebhookRejected(
                "webhook-timestamp must be Unix seconds", reason="malformed_header"
            )
        timestamp = int(raw_timestamp)
        now = time.time() if now is None else now
        if abs(now - timestamp) > TIMESTAMP_TOLERANCE:
            raise WebhookRejected(
                "webhook-timestamp is more than 5 minutes from now; "
                "refusing a stale or replayed webhook",
                reason="stale_timestamp",
            )

        offered = _v1_signatures(raw_signatures)
        signed = f"{webhook_id}.{raw_timestamp}.".encode() + body
        for key in self._keys:
            expected = hmac.new(key, signed, hashlib.sha256).digest()
            # Every offered signature is compared, in constant time each.
            if any(hmac.compare_digest(expected, sig) for sig in offered):
                return VerifiedWebhook(webhook_id, timestamp)
        raise SignatureMismatch(
            "webhook-signature matches none of the secrets", reason="bad_signature"
        )


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise WebhookRejected(f"the {name} header is missing", reason="missing_header")
    if len(value) > 4096:
        raise WebhookRejected(
            f"the {name} header is too long", reason="malformed_header"
        )
    # Every Standard Webhooks header is printable ASCII. aiohttp hands over
    # other bytes as lone surrogates, which could not even be encoded to be
    # signed; and only ASCII digits may make a timestamp.
    if not (value.isascii() and value.isprintable()):
        raise WebhookRejected(
            f"the {name} header must be printable ASCII", reason="malformed_header"
        )
    return value


def _v1_signatures(header: str) -> list[bytes]:
    """The `v1,<base64>` entries of a space-separated signature list.

    Entries of other versions are skipped, as the specification allows them to be
    added; an entry that claims v1 but is not base64 is refused outright.
    """
    signatures = []
    for entry in header.split():
        version, sep, encoded = entry.partition(",")
        if not sep:
            raise WebhookRejected(
                "webhook-signature entries must be version,signature",
                reason="malformed_signature",
            )
        if version != "v1":
            continue
        try:
            signatures.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise WebhookRejected(
                "webhook-signature has a v1 entry that is not base64",
                reason="malformed_signature",
            ) from None
    if not signatures:
        raise WebhookRejected(
            "webhook-signature has no v1 signature", reason="malformed_signature"
        )
    return signatures
