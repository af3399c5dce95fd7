"""Identifiers and timestamps in the forms Replicate uses."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

# Replicate's training ids are 26 lowercase base32 characters.
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ID_LENGTH = 26
_WEBHOOK_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def training_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def version_id() -> str:
    """64 hex digits, like the content hash Replicate names versions by."""
    return secrets.token_hex(32)


def webhook_id() -> str:
    """A Standard Webhooks message id; every resend of one message reuses it."""
    return "msg_" + "".join(secrets.choice(_WEBHOOK_ID_ALPHABET) for _ in range(27))


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with microseconds and a Z, as Replicate writes times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
