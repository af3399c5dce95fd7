"""Building trainings and Replicate objects for tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from service.domain.ids import new_id
from service.domain.names import ModelRef
from service.replicate.models import Training
from service.store import trainings as store
from service.store.trainings import NewTraining, Policy, TrainingRecord

TRAINER_VERSION = "e440909d3512c31646ee2e0c7d6f6f4923224863a6a10c494606e79fb5844497"
TRAINER = f"ostris/flux-dev-lora-trainer:{TRAINER_VERSION}"
INPUT = {"input_images": "https://example.com/faces.zip", "steps": 100}
# What a state change needs from the settings, for tests that make changes.
POLICY = Policy(timedelta(minutes=2), "http://tuneyard.test")


async def queued_training(
    conn: asyncpg.Connection,
    *,
    destination: str = "acme/faces",
    caller: str = "tests",
    training_input: dict[str, Any] | None = None,
    callback_url: str | None = None,
) -> TrainingRecord:
    owner, name = destination.split("/")
    record = await store.insert(
        conn,
        NewTraining(
            id=new_id("trn"),
            caller=caller,
            idempotency_key=None,
            request_hash="h",
            destination=ModelRef(owner, name),
            trainer=TRAINER,
            input=training_input or INPUT,
            destination_settings=None,
            metadata={},
            callback_url=callback_url,
        ),
        POLICY,
    )
    assert record is not None
    return record


def replicate_training(
    replicate_id: str,
    status: str,
    *,
    destination: str = "acme/faces",
    version_id: str = "f" * 64,
    error: str | None = None,
    **extra: Any,
) -> Training:
    output = None
    if status == "succeeded":
        output = {
            "version": f"{destination}:{version_id}",
            "weights": f"https://replicate.delivery/{replicate_id}/trained_model.tar",
        }
    return Training.model_validate(
        {
            "id": replicate_id,
            "model": "ostris/flux-dev-lora-trainer",
            "version": TRAINER_VERSION,
            "input": INPUT,
            "status": status,
            "output": output,
            "error": error,
            "logs": "",
            "created_at": "2026-12-03T10:00:00.000000Z",
            "started_at": "2026-12-03T10:00:05.000000Z"
            if status != "starting"
            else None,
            "completed_at": "2026-12-03T10:20:00.000000Z"
            if status in ("succeeded", "failed", "canceled")
            else None,
            **extra,
        }
    )
