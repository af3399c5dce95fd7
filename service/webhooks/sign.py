"""Signing Tuneyard's own callbacks as Standard Webhooks.

Every configured secret signs every message, so while a secret is rotated a
receiver that knows either the old or the new one accepts it.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from .verify import SECRET_PREFIX


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: whsec_ and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookSigner:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is needed")
        self._hooks = [Webhook(secret) for secret in secrets]

    def headers(
        self, webhook_id: str, body: bytes, *, now: datetime | None = None
    ) -> dict[str, str]:
        """The headers that go with one attempt: a fresh timestamp each time,
        the same webhook-id on every attempt of one message."""
        when = now or datetime.now(UTC)
        text = body.decode()
        return {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": " ".join(
                hook.sign(webhook_id, when, text) for hook in self._hooks
            ),
        }
