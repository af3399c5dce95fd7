"""Callbacks to callers: what was sent, and sending again.

GET  /v1/trainings/{id}/notifications    each event, its attempts and answers
POST /v1/notifications/{id}/redeliver    send one event again
POST /v1/notifications/redeliver         send again every failed event of a caller
                                         since a time
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..errors import Conflict, NotFound
from ..resources import POOL
from ..store import notifications as store
from ..store import trainings as trainings_store
from ..store.notifications import NotificationRecord
from . import requests
from .callers import Forbidden, caller_of
from .openapi import operation

routes = web.RouteTableDef()


class DeliveryAttempt(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


class NotificationResource(BaseModel):
    id: str
    type: str
    training_id: str
    caller: str
    callback_url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    created_at: datetime
    payload: dict
    attempt_log: list[DeliveryAttempt]

    @classmethod
    def of(
        cls, record: NotificationRecord, attempts: list | None = None
    ) -> NotificationResource:
        return cls(
            id=record.id,
            type=record.type,
            training_id=record.training_id,
            caller=record.caller,
            callback_url=record.callback_url,
            status=record.status,
            attempts=record.attempts,
            next_attempt_at=record.next_attempt_at
            if record.status == "pending"
            else None,
            delivered_at=record.delivered_at,
            last_error=record.last_error,
            created_at=record.created_at,
            payload=record.payload,
            attempt_log=[
                DeliveryAttempt(
                    attempt=row["attempt"],
                    started_at=row["started_at"],
                    duration_ms=row["duration_ms"],
                    status_code=row["status_code"],
                    error=row["error"],
                )
                for row in attempts or []
            ],
        )


class NotificationList(BaseModel):
    results: list[NotificationResource]


class RedeliverFailed(BaseModel):
    """Which failed notifications to send again."""

    model_config = ConfigDict(extra="forbid")

    caller: str = Field(min_length=1, max_length=200)
    since: AwareDatetime


class RedeliverResult(BaseModel):
    redelivered: int


async def _visible_training(
    request: web.Request, conn: asyncpg.Connection, training_id: str
) -> None:
    training = await trainings_store.get(conn, training_id)
    if training is None:
        raise NotFound(f"no training {training_id}")
    caller_of(request).require(training.destination_owner)


@routes.get("/v1/trainings/{training_id}/notifications")
@operation(
    "A training's callback events and their attempts",
    tag="callbacks",
    responses={200: NotificationList},
    errors=(404,),
)
async def training_notifications(request: web.Request) -> web.Response:
    training_id = request.match_info["training_id"]
    async with request.app[POOL].acquire() as conn:
        await _visible_training(request, conn, training_id)
        found = await store.for_training(conn, training_id)
    return requests.json_response(
        NotificationList(results=[NotificationResource.of(n, a) for n, a in found])
    )


@routes.post("/v1/notifications/{notification_id}/redeliver")
@operation(
    "Send a callback event again",
    tag="callbacks",
    responses={202: NotificationResource},
    errors=(404, 409),
)
async def redeliver(request: web.Request) -> web.Response:
    """Send a delivered or failed event again, under its own webhook-id."""
    notification_id = request.match_info["notification_id"]
    async with request.app[POOL].acquire() as conn:
        existing = await store.get(conn, notification_id)
        if existing is None:
            raise NotFound(f"no notification {notification_id}")
        await _visible_training(request, conn, existing.training_id)
        record = await store.redeliver(conn, notification_id)
        if record is None:
            raise Conflict(f"notification {notification_id} is already being delivered")
    return requests.json_response(NotificationResource.of(record), status=202)


@routes.post("/v1/notifications/redeliver")
@operation(
    "Send again every failed callback event of a caller since a time",
    tag="callbacks",
    request=RedeliverFailed,
    responses={202: RedeliverResult},
)
async def redeliver_failed(request: web.Request) -> web.Response:
    body = await requests.read_json(request, RedeliverFailed)
    caller = caller_of(request)
    if caller.owners and body.caller != caller.name:
        # A token limited to some owners redelivers only its own events.
        raise Forbidden(f"token {caller.name} may only redeliver its own events")
    async with request.app[POOL].acquire() as conn:
        count = await store.redeliver_failed(conn, body.caller, body.since)
    return requests.json_response(RedeliverResult(redelivered=count), status=202)
