"""/v1/trainings: submit, read, list, cancel, and read a training's events."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from .. import trainings
from ..config import Settings
from ..domain.ids import is_training_id
from ..domain.names import MODEL_PATTERN, VERSION_PATTERN, parse_model, parse_version
from ..domain.status import Status
from ..domain.views import TrainingResource
from ..errors import InvalidRequest, NotFound, ValidationFailed
from ..resources import EVENT_HUB, POLICY, POOL, REPLICATE, SETTINGS
from ..store import trainings as store
from ..store.trainings import TrainingFilter, TrainingRecord
from . import requests
from .callers import caller_of
from .destinations import DestinationSettings
from .openapi import PAGE, Param, operation

routes = web.RouteTableDef()

# Bounds on what a caller may store with a training: enough for real trainer
# inputs and for labels, small enough that no caller can bloat the database.
MAX_INPUT_BYTES = 256 * 1024
MAX_METADATA_KEYS = 32
MAX_URL_LENGTH = 2048
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# How long a client should wait before reconnecting a dropped stream, and how often
# an idle stream sends a comment so proxies do not close it.
SSE_RETRY_MS = 2000
SSE_KEEPALIVE = 15.0

STATUS_VALUES = "|".join(s.value for s in Status)
STATUS_PARAM = Param(
    "status",
    "query",
    {"type": "string", "pattern": f"^({STATUS_VALUES})(,({STATUS_VALUES}))*$"},
    "Any of these statuses, comma-separated.",
)
DESTINATION_PARAM = Param(
    "destination",
    "query",
    {"type": "string", "pattern": MODEL_PATTERN},
    "owner/name",
)
IDEMPOTENCY_PARAM = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "pattern": IDEMPOTENCY_KEY.pattern},
    "Send the same request again safely: the first answer is given back.",
)

METADATA_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MetadataKey = Annotated[str, StringConstraints(pattern=METADATA_KEY_PATTERN)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class TrainingRequest(BaseModel):
    """The body of POST /v1/trainings."""

    model_config = ConfigDict(extra="forbid")

    destination: str = Field(
        description="The model to train into, owner/name.",
        json_schema_extra={"pattern": MODEL_PATTERN},
    )
    trainer: str = Field(
        description="The trainer, owner/name:version_id.",
        json_schema_extra={"pattern": VERSION_PATTERN},
    )
    input: dict[str, Any] = Field(description="The trainer's inputs.")
    destination_settings: DestinationSettings | None = None
    callback_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        json_schema_extra={
            "format": "uri",
            "pattern": "^https?://[a-z0-9.-]+(:[0-9]+)?/",
        },
    )
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        json_schema_extra={
            "propertyNames": {"pattern": METADATA_KEY_PATTERN},
            "maxProperties": MAX_METADATA_KEYS,
        },
    )

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
@operation(
    "Submit a training",
    tag="trainings",
    request=TrainingRequest,
    responses={202: TrainingResource},
    params=(IDEMPOTENCY_PARAM,),
)
async def create_training(request: web.Request) -> web.Response:
    """Accept a training; it is durable before the 202 is sent."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters"
        )
    body = await requests.read_json(request, TrainingRequest)
    destination = parse_model(body.destination)
    caller = caller_of(request)
    caller.require(destination.owner)
    if body.callback_url is not None:
        _check_callback(body.callback_url, request.app[SETTINGS])

    record, replayed = await trainings.accept(
        request.app[POOL],
        caller=caller.name,
        idempotency_key=key,
        destination=destination,
        trainer=body.trainer,
        body=body.model_dump(mode="json"),
        policy=request.app[POLICY],
    )

    resource = TrainingResource.of(record, _base(request))
    headers = {"Location": resource.urls["self"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return requests.json_response(resource, status=202, headers=headers)


@routes.get("/v1/trainings")
@operation(
    "List trainings, newest first",
    tag="trainings",
    responses={200: TrainingPage},
    params=(STATUS_PARAM, DESTINATION_PARAM, *PAGE),
)
async def list_trainings(request: web.Request) -> web.Response:
    """Newest first, filtered by status, destination and metadata.

    Query: `status=queued,running` (any of), `destination=owner/name`,
    `metadata.<key>=<value>` (all must match), `limit` (1-100), `cursor`.
    """
    where = _filter(request)
    caller = caller_of(request)
    if where.destination is not None:
        caller.require(where.destination.owner)
    limit = requests.query_int(request, "limit", 50, 1, 100)
    before = requests.decode_cursor(request)
    if before is not None and not is_training_id(before):
        raise InvalidRequest("cursor is not one this API gave out")

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
@operation(
    "A training",
    tag="trainings",
    responses={200: TrainingResource},
    errors=(404,),
)
async def get_training(request: web.Request) -> web.Response:
    record = await _load(request)
    return requests.json_response(TrainingResource.of(record, _base(request)))


@routes.post("/v1/trainings/{training_id}/cancel")
@operation(
    "Cancel a training",
    tag="trainings",
    responses={200: TrainingResource, 202: TrainingResource},
    errors=(404, 409),
)
async def cancel_training(request: web.Request) -> web.Response:
    """200 once cancelled; 202 while the cancel waits on Replicate; 409 if finished."""
    training_id = (await _load(request)).id
    record = await trainings.cancel(
        request.app[POOL],
        request.app[REPLICATE],
        training_id,
        policy=request.app[POLICY],
    )
    status = 200 if record.status.is_terminal else 202
    return requests.json_response(
        TrainingResource.of(record, _base(request)), status=status
    )


@routes.get("/v1/trainings/{training_id}/events")
@operation(
    "A training's events, as a list or a live stream",
    tag="trainings",
    responses={200: TrainingEventList},
    raw={200: "text/event-stream"},
    params=(
        Param(
            "Last-Event-ID",
            "header",
            {"type": "string", "pattern": "^[0-9]+$"},
            "Resume a stream after this event.",
        ),
        Param(
            "after",
            "query",
            {"type": "integer", "minimum": 0},
            "Resume a stream after this event (for clients that cannot set headers).",
        ),
    ),
    errors=(404,),
)
async def training_events(request: web.Request) -> web.StreamResponse:
    """Every webhook and poll result applied to the training, in order.

    With `Accept: text/event-stream`, the events are streamed as server-sent
    events while they happen, resuming after `Last-Event-ID`; the stream ends
    with an `end` event once the training has finished.
    """
    record = await _load(request)
    after = _last_event_id(request)
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _stream_events(request, record, after)
    async with request.app[POOL].acquire() as conn:
        rows = await store.events(conn, record.id, after=after)
    return requests.json_response(
        TrainingEventList(results=[TrainingEvent(**dict(row)) for row in rows])
    )


async def _stream_events(
    request: web.Request, record: TrainingRecord, after: int
) -> web.StreamResponse:
    subscription = request.app[EVENT_HUB].subscribe(record.id)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            # Proxies that buffer would hold events back until the stream ends.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        await response.write(f"retry: {SSE_RETRY_MS}\n\n".encode())
        while not subscription.closed:
            async with request.app[POOL].acquire() as conn:
                # Status first: an event and the status it led to commit together,
                # so a finished status read here comes with its events below.
                current = await store.get(conn, record.id)
                rows = await store.events(conn, record.id, after=after)
            for row in rows:
                data = TrainingEvent(**dict(row)).model_dump_json()
                await response.write(
                    f"id: {row['id']}\nevent: training.event\ndata: {data}\n\n".encode()
                )
                after = row["id"]
            if current is not None and current.status.is_terminal:
                end = json.dumps({"status": current.status.value})
                await response.write(f"event: end\ndata: {end}\n\n".encode())
                break
            if not await subscription.wait(SSE_KEEPALIVE):
                await response.write(b": keepalive\n\n")
    except ConnectionResetError:
        pass  # the client went away
    finally:
        request.app[EVENT_HUB].unsubscribe(subscription)
    return response


def _last_event_id(request: web.Request) -> int:
    """Where to resume: Last-Event-ID (as EventSource sends it), else `after`."""
    after = _event_id(request.query.get("after"), "after")
    given = _event_id(request.headers.get("Last-Event-ID"), "Last-Event-ID")
    return given if given is not None else (after or 0)


def _event_id(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidRequest(f"{name} must be an event id")
    return int(raw)


async def _load(request: web.Request) -> TrainingRecord:
    """The training named by the path, if the caller may see its destination."""
    training_id = request.match_info["training_id"]
    async with request.app[POOL].acquire() as conn:
        record = await store.get(conn, training_id)
    if record is None:
        raise NotFound(f"no training {training_id}")
    caller_of(request).require(record.destination_owner)
    return record


def _check_callback(url: str, settings: Settings) -> None:
    """Callbacks are signed, so they need a secret; and a configured allow-list
    keeps Tuneyard from being pointed at hosts it should not call."""
    if not settings.callback_secrets:
        raise ValidationFailed(
            "this Tuneyard cannot sign callbacks: TUNEYARD_WEBHOOK_SECRET is not set",
            errors=[{"field": "callback_url", "message": "callbacks are not enabled"}],
        )
    allowed = settings.allowed_callback_hosts
    host = (urlsplit(url).hostname or "").lower()
    if allowed and not any(_host_matches(host, pattern) for pattern in allowed):
        raise ValidationFailed(
            f"callback_url host {host} is not in TUNEYARD_CALLBACK_HOSTS",
            errors=[{"field": "callback_url", "message": "host not allowed"}],
        )


def _host_matches(host: str, pattern: str) -> bool:
    pattern = pattern.split(":")[0]
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


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
        statuses=tuple(statuses),
        destination=destination,
        metadata=metadata,
        owners=caller_of(request).owners,
    )
