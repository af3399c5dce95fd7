"""Signing webhooks as Replicate does, with the Standard Webhooks reference library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook


def signed_webhook(
    secret: str,
    body: dict[str, Any] | bytes,
    *,
    webhook_id: str | None = None,
    timestamp: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    when = timestamp or datetime.now(UTC)
    return raw, {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": _sign(secret, webhook_id, when, raw),
    }


def _sign(secret: str, webhook_id: str, when: datetime, raw: bytes) -> str:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        # The reference library signs text only; a sender can still sign any bytes.
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = f"{webhook_id}.{int(when.timestamp())}.".encode() + raw
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode()
    return Webhook(secret).sign(webhook_id, when, text)
