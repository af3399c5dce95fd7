"""How trainings and versions are shown to callers.

The same representations answer API requests and fill callback events, so they
live here, where both the API handlers and the store (which writes the outbox)
can reach them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .status import Status

if TYPE_CHECKING:
    from ..store.trainings import TrainingRecord


class ProducedVersion(BaseModel):
    id: str
    destination: str


class TrainingResource(BaseModel):
    """A training as Tuneyard knows it."""

    id: str
    status: Status
    destination: str
    trainer: str
    input: dict[str, Any]
    destination_settings: dict[str, Any] | None
    metadata: dict[str, str]
    callback_url: str | None
    caller: str
    replicate_id: str | None
    replicate_status: str | None
    error: str | None
    version: ProducedVersion | None
    attempts: int
    last_attempt_error: str | None
    cancel_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    urls: dict[str, str]

    @classmethod
    def of(cls, record: TrainingRecord, base: str) -> TrainingResource:
        fields = training_fields(record, base)
        if fields["version"] is not None:
            fields["version"] = ProducedVersion.model_construct(**fields["version"])
        # From Tuneyard's own record: nothing to validate.
        return cls.model_construct(**fields)


class Lineage(BaseModel):
    """How a version came to be: the training, its trainer, input and caller."""

    training_id: str
    replicate_training_id: str | None
    trainer: str
    input: dict[str, Any]
    caller: str
    metadata: dict[str, str]


class VersionResource(BaseModel):
    id: str
    destination: str
    created_at: datetime
    recorded_at: datetime
    weights_url: str | None
    description: str | None
    tags: list[str]
    aliases: list[str]
    deleted_at: datetime | None
    source: str
    lineage: Lineage | None
    urls: dict[str, str]

    @classmethod
    def of(cls, row: Mapping[str, Any], base: str) -> VersionResource:
        fields = version_fields(row, base)
        if fields["lineage"] is not None:
            fields["lineage"] = Lineage.model_construct(**fields["lineage"])
        return cls.model_construct(**fields)


# The representations as plain data, in the models' field order. The models
# above are built from them for API answers; callback events serialise them
# directly (`to_json`), which gives the same JSON and halves the cost of a
# callback event, written for nearly every webhook.


def training_fields(record: TrainingRecord, base: str) -> dict[str, Any]:
    """A TrainingResource's fields, from Tuneyard's record of the training."""
    own = f"{base}/v1/trainings/{record.id}"
    version = None
    if record.version_id is not None:
        version = {"id": record.version_id, "destination": str(record.destination)}
    return {
        "id": record.id,
        "status": record.status,
        "destination": str(record.destination),
        "trainer": record.trainer,
        "input": record.input,
        "destination_settings": record.destination_settings,
        "metadata": record.metadata,
        "callback_url": record.callback_url,
        "caller": record.caller,
        "replicate_id": record.replicate_id,
        "replicate_status": record.replicate_status,
        "error": record.error,
        "version": version,
        "attempts": record.attempts,
        "last_attempt_error": record.last_attempt_error,
        "cancel_requested_at": record.cancel_requested_at,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "submitted_at": record.submitted_at,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "urls": {"self": own, "events": f"{own}/events", "cancel": f"{own}/cancel"},
    }


def version_fields(row: Mapping[str, Any], base: str) -> dict[str, Any]:
    """A VersionResource's fields, from a version's row with its training's."""
    ref = f"{row['owner']}/{row['name']}"
    own = f"{base}/v1/destinations/{ref}/versions/{row['version_id']}"
    urls = {"self": own}
    lineage = None
    if row["training_id"] is not None:
        urls["training"] = f"{base}/v1/trainings/{row['training_id']}"
        lineage = {
            "training_id": row["training_id"],
            "replicate_training_id": row["replicate_id"],
            "trainer": row["trainer"],
            "input": row["input"],
            "caller": row["caller"],
            "metadata": row["metadata"],
        }
    return {
        "id": row["version_id"],
        "destination": ref,
        "created_at": row["created_at"],
        "recorded_at": row["recorded_at"],
        "weights_url": row["weights_url"],
        "description": row["description"],
        "tags": row["tags"],
        "aliases": row["aliases"],
        "deleted_at": row["deleted_at"],
        "source": row["source"],
        "lineage": lineage,
        "urls": urls,
    }
