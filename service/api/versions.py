"""/v1/destinations/{owner}/{name}/versions: a destination's fine-tuned versions.

Wherever a version id is accepted, `@alias` names the version an alias points at,
and `@latest` the newest live version.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .. import destinations
from ..domain.names import ALIAS_PATTERN, VERSION_ID_PATTERN, ModelRef
from ..domain.views import VersionResource
from ..errors import InvalidRequest, NotFound
from ..resources import POOL, REPLICATE
from ..store import destinations as destinations_store
from ..store import versions as store
from ..store.versions import Position, VersionFilter
from . import requests
from .openapi import PAGE, Param, operation

routes = web.RouteTableDef()

LATEST = "latest"
_VERSION_ID = re.compile(rf"^{VERSION_ID_PATTERN}$")
ALIAS = re.compile(rf"^{ALIAS_PATTERN}$")

Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
MAX_TAGS = 32


class VersionPage(BaseModel):
    results: list[VersionResource]
    next: str | None


class VersionChanges(BaseModel):
    """The body of PATCH .../versions/{id}: fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)


async def resolve(conn: asyncpg.Connection, ref: ModelRef, given: str) -> str:
    """The version id that `given` (an id, `@alias` or `@latest`) stands for."""
    if given.startswith("@"):
        alias = given[1:]
        found = (
            await store.latest_id(conn, ref)
            if alias == LATEST
            else await store.resolve_alias(conn, ref, alias)
        )
        if found is None:
            raise NotFound(f"no version is aliased {given} in {ref}")
        return found
    if not _VERSION_ID.match(given):
        raise NotFound(f"no version {given} in {ref}; version ids are 64 hex digits")
    return given


async def load_version_resource(
    conn: asyncpg.Connection, ref: ModelRef, version_id: str, base: str
) -> VersionResource:
    row = await store.get(conn, ref, version_id)
    if row is None:
        raise NotFound(f"no version {version_id} in {ref}")
    return VersionResource.of(row, base)


@routes.get("/v1/destinations/{owner}/{name}/versions")
@operation(
    "List a destination's versions, newest first",
    tag="versions",
    responses={200: VersionPage},
    params=(
        *PAGE,
        Param("created_after", "query", {"type": "string", "format": "date-time"}),
        Param("created_before", "query", {"type": "string", "format": "date-time"}),
        Param(
            "tag",
            "query",
            {"type": "array", "items": {"type": "string"}},
            "Versions carrying every one of these tags.",
        ),
        Param(
            "include_deleted", "query", {"type": "string", "enum": ["true", "false"]}
        ),
    ),
    errors=(404,),
)
async def list_versions(request: web.Request) -> web.Response:
    """Newest first. Query: `limit` (1-100), `cursor`, `created_after`,
    `created_before` (ISO 8601), `tag` (repeatable; all must match),
    `metadata.<key>=<value>` (of the training that made it), `include_deleted`."""
    ref = requests.path_destination(request)
    where = _filter(request)
    limit = requests.query_int(request, "limit", 50, 1, 100)
    after = _position(requests.decode_cursor(request))

    async with request.app[POOL].acquire() as conn:
        await require_destination(conn, ref)
        rows = await store.page(conn, ref, where, after=after, limit=limit + 1)

    more = len(rows) > limit
    rows = rows[:limit]
    cursor = None
    if more:
        last = rows[-1]
        cursor = f"{last['created_at'].isoformat()}|{last['version_id']}"
    base = str(request.url.origin())
    page = VersionPage(
        results=[VersionResource.of(row, base) for row in rows],
        next=requests.next_link(request, cursor),
    )
    return requests.json_response(page)


@routes.get("/v1/destinations/{owner}/{name}/versions/{version}")
@operation(
    "A version with its lineage; `@alias` and `@latest` resolve",
    tag="versions",
    responses={200: VersionResource},
    errors=(404,),
)
async def get_version(request: web.Request) -> web.Response:
    ref = requests.path_destination(request)
    async with request.app[POOL].acquire() as conn:
        version_id = await resolve(conn, ref, request.match_info["version"])
        resource = await load_version_resource(
            conn, ref, version_id, str(request.url.origin())
        )
    return requests.json_response(resource)


@routes.patch("/v1/destinations/{owner}/{name}/versions/{version}")
@operation(
    "Change a version's description and tags",
    tag="versions",
    request=VersionChanges,
    responses={200: VersionResource},
    errors=(404,),
)
async def patch_version(request: web.Request) -> web.Response:
    """Change the description and tags (tags are replaced as a whole)."""
    ref = requests.path_destination(request)
    changes = await requests.read_json(request, VersionChanges)
    async with request.app[POOL].acquire() as conn:
        version_id = await resolve(conn, ref, request.match_info["version"])
        found = await store.update(
            conn,
            ref,
            version_id,
            description=changes.description,
            set_description="description" in changes.model_fields_set,
            tags=sorted(set(changes.tags)) if changes.tags is not None else None,
        )
        if not found:
            raise NotFound(f"no version {version_id} in {ref}")
        resource = await load_version_resource(
            conn, ref, version_id, str(request.url.origin())
        )
    return requests.json_response(resource)


@routes.delete("/v1/destinations/{owner}/{name}/versions/{version}")
@operation(
    "Delete a version on Replicate and record it deleted",
    tag="versions",
    responses={202: VersionResource},
    errors=(404, 409, 422, 502),
)
async def delete_version(request: web.Request) -> web.Response:
    """Delete on Replicate (which deletes later, hence 202) and record it deleted."""
    ref = requests.path_destination(request)
    async with request.app[POOL].acquire() as conn:
        version_id = await resolve(conn, ref, request.match_info["version"])
    await destinations.delete_version(
        request.app[POOL], request.app[REPLICATE], ref, version_id
    )
    async with request.app[POOL].acquire() as conn:
        resource = await load_version_resource(
            conn, ref, version_id, str(request.url.origin())
        )
    return requests.json_response(resource, status=202)


async def require_destination(conn: asyncpg.Connection, ref: ModelRef) -> None:
    if await destinations_store.get(conn, ref) is None:
        raise NotFound(f"no destination {ref}")


def _filter(request: web.Request) -> VersionFilter:
    tags = tuple(request.query.getall("tag", []))
    include = request.query.get("include_deleted", "false")
    if include not in ("true", "false"):
        raise InvalidRequest("include_deleted must be true or false")
    return VersionFilter(
        created_after=_time(request, "created_after"),
        created_before=_time(request, "created_before"),
        tags=tags,
        metadata={
            key.removeprefix("metadata."): value
            for key, value in request.query.items()
            if key.startswith("metadata.")
        },
        include_deleted=include == "true",
    )


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    # An unencoded "+" in a query string arrives as a space; no ISO time has one.
    raw = raw.replace(" ", "+").replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _position(cursor: str | None) -> Position | None:
    if cursor is None:
        return None
    created, _, version_id = cursor.partition("|")
    try:
        return Position(datetime.fromisoformat(created), version_id)
    except ValueError:
        raise InvalidRequest("cursor is not one this API gave out") from None
