"""Reading a training request: its body, its trainer, destination and input.

The checks run in the order Replicate's answers imply: the trainer model and
version first (422), then the body's own fields (422), then the destination
(404), then the input against the trainer's schema (422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .bodies import checked, optional
from .errors import InputValidationFailed, InvalidField
from .schema import check, input_schema
from .state import Store
from .trainers import Trainer
from .webhooks import EVENTS

DESTINATION_PATTERN = r"^[a-z0-9._-]+/[a-z0-9._-]+$"

TRAINING_BODY = {
    "type": "object",
    "required": ["destination", "input"],
    "additionalProperties": False,
    "properties": {
        "destination": {"type": "string", "pattern": DESTINATION_PATTERN},
        "input": {"type": "object"},
        "webhook": optional("string", format="uri"),
        "webhook_events_filter": optional(
            "array", items={"type": "string", "enum": list(EVENTS)}
        ),
    },
}


@dataclass(frozen=True)
class Submission:
    """A training request that passed every check."""

    trainer: Trainer
    destination: str
    input: dict[str, Any]
    effective_input: dict[str, Any]
    webhook: str | None
    webhook_events_filter: list[str] | None


def read_submission(
    store: Store, owner: str, name: str, version_id: str, body: Any
) -> Submission:
    """Check a training request against the store; raises the problem to answer."""
    trainer = store.trainer(owner, name, version_id)
    fields = checked(body, TRAINING_BODY)
    webhook = fields.get("webhook")
    if webhook is not None:
        _check_webhook_url(webhook)
    store.destination(fields["destination"])

    found = input_schema(trainer.openapi_schema())
    schema, components = found if found is not None else ({"type": "object"}, {})
    result = check(fields["input"], schema, components, path="input")
    if result.invalid:
        raise InputValidationFailed(result.invalid)

    events = fields.get("webhook_events_filter")
    return Submission(
        trainer=trainer,
        destination=fields["destination"],
        input=fields["input"],
        effective_input=result.value,
        webhook=webhook,
        webhook_events_filter=None if events is None else list(dict.fromkeys(events)),
    )


def _check_webhook_url(url: str) -> None:
    # Replicate takes only https webhooks; the simulator also takes http, so that
    # a receiver on this machine needs no certificate.
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputValidationFailed(
            [InvalidField("format", "webhook", "webhook must be an http or https URL")]
        )
