"""/v1/trainings: submit, read, list, cancel, and read a training's events."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from .. import trainings
from ..domain.names import parse_model, parse_version
from ..domain.status import Status
from ..errors import InvalidRequest, NotFound
from ..resources import POOL, REPLICATE, SETTINGS
from ..store import trainings as store
from ..store.trainings import TrainingFilter, TrainingRecord
from . import requests
from .callers import caller_of

routes = web.RouteTableDef()

# Bounds on what a caller may store with a training: enough for real trainer
# inputs and for labels, small enough that no caller can bloat the database.
MAX_INPUT_BYTES = 256 * 1024
MAX_METADATA_KEYS = 32
MAX_URL_LENGTH = 2048
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class DestinationSettings(BaseModel):
    """How to create the destination model if it does not exist yet."""

    model_config = ConfigDict(extra="forbid")

    visibility: Literal["public", "private"] | None = None
    hardware: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,64}$")
    description: str | None = Field(default=None, max_length=2000)


class TrainingRequest(BaseModel):
    """The body of POST /v1/trainings."""

    model_config = ConfigDict(extra="forbid")

    destination: str = Field(description="The model to train into, owner/name.")
    trainer: str = Field(description="The trainer, owner/name:version_id.")
    input: dict[str, Any] = Field(description="The trainer's inputs.")
    destination_settings: DestinationSettings | None = None
    callback_url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict)

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        parse_model(value)
        return value

    @field_validator("trainer")
    @classmethod
    def _trainer(cls, value: str) -> str:
        parse_version(value)
        return value

    @field_validator("input")
    @classmethod
    def _input_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > MAX_INPUT_BYTES:
            raise ValueError(f"must be at most {MAX_INPUT_BYTES} bytes as JSON")
        return value

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"must have at most {MAX_METADATA_KEYS} keys")
        return value


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
        own = f"{base}/v1/trainings/{record.id}"
        version = None
        if record.version_id is not None:
            version = ProducedVersion(
                id=record.version_id, destination=str(record.destination)
            )
        return cls(
            id=record.id,
            status=record.status,
            destination=str(record.destination),
            trainer=record.trainer,
            input=record.input,
            destination_settings=record.destination_settings,
            metadata=record.metadata,
            callback_url=record.callback_url,
            caller=record.caller,
            replicate_id=record.replicate_id,
            replicate_status=record.replicate_status,
            error=record.error,
            version=version,
            attempts=record.attempts,
            last_attempt_error=record.last_attempt_error,
            cancel_requested_at=record.cancel_requested_at,
            created_at=record.created_at,
            updated_at=record.updated_at,
            submitted_at=record.submitted_at,
            started_at=record.started_at,
            completed_at=record.completed_at,
            urls={"self": own, "events": f"{own}/events", "cancel": f"{own}/cancel"},
        )


class TrainingPage(BaseModel):
    results: list[TrainingResource]
    next: str | None


class TrainingEvent(BaseModel):
    id: int
    source: str
    status: str | None
    webhook_id: str | None
    replicate_id: str | None
    applied: bool
    received_at: datetime
    body: dict[str, Any]


class TrainingEventList(BaseModel):
    results: list[TrainingEvent]


def _base(request: web.Request) -> str:
    return str(request.url.origin())


@routes.post("/v1/trainings")
async def create_training(request: web.Request) -> web.Response:
    """Accept a training; it is durable before the 202 is sent."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters"
        )
    body = await requests.read_json(request, TrainingRequest)

    record, replayed = await trainings.accept(
        request.app[POOL],
        caller=caller_of(request),
        idempotency_key=key,
        destination=parse_model(body.destination),
        trainer=body.trainer,
        body=body.model_dump(mode="json"),
    )

    resource = TrainingResource.of(record, _base(request))
    headers = {"Location": resource.urls["self"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return requests.json_response(resource, status=202, headers=headers)


@routes.get("/v1/trainings")
async def list_trainings(request: web.Request) -> web.Response:
    """Newest first, filtered by status, destination and metadata.

    Query: `status=queued,running` (any of), `destination=owner/name`,
    `metadata.<key>=<value>` (all must match), `limit` (1-100), `cursor`.
    """
    where = _filter(request)
    limit = requests.query_int(request, "limit", 50, 1, 100)
    before = requests.decode_cursor(request)

    async with request.app[POOL].acquire() as conn:
        records = await store.page(conn, where, before=before, limit=limit + 1)

    more = len(records) > limit
    records = records[:limit]
    base = _base(request)
    page = TrainingPage(
        results=[TrainingResource.of(r, base) for r in records],
        next=requests.next_link(request, records[-1].id if more else None),
    )
    return requests.json_response(page)


@routes.get("/v1/trainings/{training_id}")
async def get_training(request: web.Request) -> web.Response:
    record = await _load(request)
    return requests.json_response(TrainingResource.of(record, _base(request)))


@routes.post("/v1/trainings/{training_id}/cancel")
async def cancel_training(request: web.Request) -> web.Response:
    """200 once cancelled; 202 while the cancel waits on Replicate; 409 if finished."""
    training_id = request.match_info["training_id"]
    record = await trainings.cancel(
        request.app[POOL],
        request.app[REPLICATE],
        training_id,
        poll_after=timedelta(seconds=request.app[SETTINGS].reconcile_after),
    )
    status = 200 if record.status.is_terminal else 202
    return requests.json_response(
        TrainingResource.of(record, _base(request)), status=status
    )


@routes.get("/v1/trainings/{training_id}/events")
async def training_events(request: web.Request) -> web.Response:
    """Every webhook and poll result applied to the training, in order."""
    record = await _load(request)
    async with request.app[POOL].acquire() as conn:
        rows = await store.events(conn, record.id)
    return requests.json_response(
        TrainingEventList(results=[TrainingEvent(**dict(row)) for row in rows])
    )


async def _load(request: web.Request) -> TrainingRecord:
    training_id = request.match_info["training_id"]
    async with request.app[POOL].acquire() as conn:
        record = await store.get(conn, training_id)
    if record is None:
        raise NotFound(f"no training {training_id}")
    return record


def _filter(request: web.Request) -> TrainingFilter:
    statuses: list[Status] = []
    for raw in request.query.getall("status", []):
        for part in raw.split(","):
            try:
                statuses.append(Status(part.strip()))
            except ValueError:
                known = ", ".join(s.value for s in Status)
                raise InvalidRequest(f"status must be one of {known}") from None
    destination = None
    if "destination" in request.query:
        try:
            destination = parse_model(request.query["destination"])
        except ValueError as exc:
            raise InvalidRequest(f"destination {exc}") from None
    metadata = {
        key.removeprefix("metadata."): value
        for key, value in request.query.items()
        if key.startswith("metadata.")
    }
    return TrainingFilter(
        statuses=tuple(statuses), destination=destination, metadata=metadata
    )
