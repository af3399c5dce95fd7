"""/v1/destinations: the Replicate models Tuneyard trains into, and their settings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from .. import destinations
from ..domain.names import NAME, NAME_PATTERN, parse_model
from ..domain.views import VersionResource
from ..errors import InvalidRequest, NotFound
from ..resources import POOL, REPLICATE, SETTINGS
from ..store import destinations as store
from ..store import versions as versions_store
from ..store.destinations import DestinationRecord
from . import requests
from .callers import caller_of
from .openapi import PAGE, Param, operation
from .versions import load_version_resource

routes = web.RouteTableDef()

OWNER_PARAM = Param(
    "owner",
    "query",
    {"type": "string", "pattern": f"^{NAME_PATTERN}$"},
    "Only this owner.",
)


class DestinationSettings(BaseModel):
    """The body of PUT /v1/destinations/{owner}/{name}; unset fields fall back to
    the configured defaults when the model is created on Replicate."""

    model_config = ConfigDict(extra="forbid")

    visibility: Literal["public", "private"] | None = None
    hardware: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,64}$")
    description: str | None = Field(default=None, max_length=2000)


class DestinationSummary(BaseModel):
    owner: str
    name: str
    visibility: str | None
    hardware: str | None
    description: str | None
    on_replicate: bool
    created_at: datetime
    updated_at: datetime
    url: str

    @classmethod
    def fields_of(cls, record: DestinationRecord, base: str) -> dict[str, object]:
        return {
            "owner": record.owner,
            "name": record.name,
            "visibility": record.visibility,
            "hardware": record.hardware,
            "description": record.description,
            "on_replicate": record.ensured_at is not None,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "url": f"{base}/v1/destinations/{record.ref}",
        }


class DestinationResource(DestinationSummary):
    ensured_at: datetime | None
    version_count: int
    latest_version: VersionResource | None
    aliases: dict[str, str]
    urls: dict[str, str]


class DestinationPage(BaseModel):
    results: list[DestinationSummary]
    next: str | None


class SyncResult(BaseModel):
    destination: str
    seen: int
    imported: int


def base_url(request: web.Request) -> str:
    return str(request.url.origin())


async def _resource(
    request: web.Request, record: DestinationRecord
) -> DestinationResource:
    ref = record.ref
    base = base_url(request)
    async with request.app[POOL].acquire() as conn:
        count = await versions_store.count_live(conn, ref)
        latest_id = await versions_store.latest_id(conn, ref)
        latest = (
            await load_version_resource(conn, ref, latest_id, base)
            if latest_id is not None
            else None
        )
        aliases = {
            row["alias"]: row["version_id"]
            for row in await versions_store.aliases(conn, ref)
        }
    own = f"{base}/v1/destinations/{ref}"
    return DestinationResource(
        **DestinationSummary.fields_of(record, base),
        ensured_at=record.ensured_at,
        version_count=count,
        latest_version=latest,
        aliases=aliases,
        urls={
            "self": own,
            "versions": f"{own}/versions",
            "aliases": f"{own}/aliases",
            "sync": f"{own}/sync",
        },
    )


@routes.put("/v1/destinations/{owner}/{name}")
@operation(
    "Create or update a destination and ensure its model on Replicate",
    tag="destinations",
    request=DestinationSettings,
    responses={200: DestinationResource, 201: DestinationResource},
    errors=(409, 502),
)
async def put_destination(request: web.Request) -> web.Response:
    """Create or update a destination's settings and make sure the model exists.

    The settings are saved first; a failure to reach Replicate leaves them saved
    and is answered 503, and repeating the request is safe.
    """
    ref = requests.path_destination(request)
    body = await requests.read_json(request, DestinationSettings)
    async with request.app[POOL].acquire() as conn:
        _, created = await store.put_settings(
            conn,
            ref,
            visibility=body.visibility,
            hardware=body.hardware,
            description=body.description,
        )

    await destinations.ensure(
        request.app[POOL], request.app[REPLICATE], request.app[SETTINGS], ref
    )

    async with request.app[POOL].acquire() as conn:
        record = await store.get(conn, ref)
    assert record is not None
    resource = await _resource(request, record)
    return requests.json_response(resource, status=201 if created else 200)


@routes.get("/v1/destinations")
@operation(
    "List destinations in name order",
    tag="destinations",
    responses={200: DestinationPage},
    params=(OWNER_PARAM, *PAGE),
)
async def list_destinations(request: web.Request) -> web.Response:
    """In name order. Query: `owner`, `limit` (1-100), `cursor`."""
    owner = request.query.get("owner")
    caller = caller_of(request)
    if owner is not None:
        if not NAME.match(owner):
            raise InvalidRequest("owner must be an account name as Replicate spells it")
        caller.require(owner)
    limit = requests.query_int(request, "limit", 50, 1, 100)
    cursor = requests.decode_cursor(request)
    after = None
    if cursor is not None:
        try:
            after = parse_model(cursor)
        except ValueError:
            raise InvalidRequest("cursor is not one this API gave out") from None

    async with request.app[POOL].acquire() as conn:
        records = await store.page(
            conn,
            owners=(owner,) if owner is not None else caller.owners,
            after=after,
            limit=limit + 1,
        )

    more = len(records) > limit
    records = records[:limit]
    base = base_url(request)
    page = DestinationPage(
        results=[
            DestinationSummary(**DestinationSummary.fields_of(r, base)) for r in records
        ],
        next=requests.next_link(request, str(records[-1].ref) if more else None),
    )
    return requests.json_response(page)


@routes.get("/v1/destinations/{owner}/{name}")
@operation(
    "A destination with its version count, latest version and aliases",
    tag="destinations",
    responses={200: DestinationResource},
    errors=(404,),
)
async def get_destination(request: web.Request) -> web.Response:
    """Settings, how many live versions, the latest one, and the aliases."""
    ref = requests.path_destination(request)
    async with request.app[POOL].acquire() as conn:
        record = await store.get(conn, ref)
    if record is None:
        raise NotFound(f"no destination {ref}")
    return requests.json_response(await _resource(request, record))


@routes.post("/v1/destinations/{owner}/{name}/sync")
@operation(
    "Import versions made outside Tuneyard",
    tag="destinations",
    responses={200: SyncResult},
    errors=(404, 422, 502),
)
async def sync_destination(request: web.Request) -> web.Response:
    """Import versions made outside Tuneyard; safe to repeat."""
    ref = requests.path_destination(request)
    counts = await destinations.sync(request.app[POOL], request.app[REPLICATE], ref)
    return requests.json_response(SyncResult(destination=str(ref), **counts))
