"""Callback events show a training and a version exactly as the API does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.status import Status
from service.domain.views import TrainingResource, VersionResource
from service.store.notifications import callback_event
from service.store.trainings import TrainingRecord

BASE = "https://tuneyard.example"
CREATED = datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)


def record(**changes: object) -> TrainingRecord:
    values: dict[str, object] = {
        "id": "trn_01JEXAMPLE0000000000000000",
        "caller": "billing",
        "idempotency_key": "key-1",
        "request_hash": "h",
        "destination_owner": "acme",
        "destination_name": "faces",
        "trainer": "ostris/flux-dev-lora-trainer:" + "e4" * 32,
        "input": {"steps": 1000, "rate": 0.0004, "images": ["a.zip"], "é": None},
        "destination_settings": {"visibility": "private"},
        "metadata": {"team": "visages", "ticket": "ÜX-12"},
        "callback_url": "https://caller.example/hooks",
        "status": Status.RUNNING,
        "replicate_status": "processing",
        "replicate_id": "r8t1",
        "error": None,
        "version_id": None,
        "attempts": 1,
        "next_attempt_at": CREATED + timedelta(minutes=2),
        "claim_token": None,
        "last_attempt_error": None,
        "create_sent_at": None,
        "cancel_requested_at": None,
        "last_event_at": CREATED,
        "created_at": CREATED,
        "updated_at": CREATED + timedelta(seconds=5),
        "submitted_at": CREATED + timedelta(seconds=1),
        "started_at": CREATED + timedelta(seconds=2),
        "completed_at": None,
    }
    values.update(changes)
    return TrainingRecord(**values)  # type: ignore[arg-type]


def version_row(training: TrainingRecord) -> dict[str, object]:
    return {
        "owner": "acme",
        "name": "faces",
        "version_id": "f" * 64,
        "training_id": training.id,
        "weights_url": "https://replicate.delivery/weights.tar",
        "created_at": CREATED + timedelta(minutes=20),
        "recorded_at": CREATED + timedelta(minutes=20, seconds=1),
        "description": None,
        "tags": [],
        "aliases": [],
        "deleted_at": None,
        "source": "training",
        "replicate_id": training.replicate_id,
        "trainer": training.trainer,
        "input": training.input,
        "caller": training.caller,
        "metadata": training.metadata,
    }


@pytest.mark.parametrize(
    "training",
    [
        record(),
        record(status=Status.QUEUED, replicate_id=None, replicate_status=None),
        record(
            status=Status.SUCCEEDED,
            version_id="f" * 64,
            completed_at=CREATED + timedelta(minutes=20),
        ),
        record(status=Status.FAILED, error="Training failed.\nOut of memory"),
        record(callback_url=None, metadata={}, destination_settings=None),
    ],
    ids=["running", "queued", "succeeded", "failed", "bare"],
)
def test_callback_training_reads_as_the_api_answers_it(
    training: TrainingRecord,
) -> None:
    event_type, payload = callback_event(training, None, BASE)

    assert event_type == f"training.{training.status.value}"
    api = TrainingResource.of(training, BASE).model_dump_json()
    assert payload == f'{{"type":"{event_type}","training":{api}}}'


def test_callback_version_reads_as_the_api_answers_it() -> None:
    training = record(status=Status.SUCCEEDED, version_id="f" * 64)
    row = version_row(training)

    _, payload = callback_event(training, row, BASE)

    api = VersionResource.of(row, BASE).model_dump_json()
    assert payload.endswith(f',"version":{api}}}')
    assert json.loads(payload)["version"]["lineage"]["training_id"] == training.id
