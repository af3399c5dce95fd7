"""/v1/destinations/{owner}/{name}/aliases: names for versions, such as production.

Moving an alias is atomic (moves within a destination take turns on its row lock)
and every move is kept, so an alias's history can be read back.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..domain.names import VERSION_OR_ALIAS
from ..errors import Conflict, NotFound, ValidationFailed
from ..resources import POOL
from ..store import versions as store
from . import requests
from .callers import caller_of
from .openapi import operation
from .versions import ALIAS, LATEST, require_destination, resolve

routes = web.RouteTableDef()


class AliasTarget(BaseModel):
    """The body of PUT .../aliases/{alias}: a version id, `@other-alias` or
    `@latest` (resolved now; the alias does not follow later versions)."""

    model_config = ConfigDict(extra="forbid")

    version_id: str = Field(pattern=VERSION_OR_ALIAS)


class AliasResource(BaseModel):
    alias: str
    version_id: str
    previous_version_id: str | None = None
    updated_at: datetime


class AliasList(BaseModel):
    results: list[AliasResource]


class AliasMoveResource(BaseModel):
    version_id: str | None
    previous_version_id: str | None
    caller: str
    moved_at: datetime


class AliasHistory(BaseModel):
    alias: str
    moves: list[AliasMoveResource]


def _alias_of(request: web.Request) -> str:
    alias = request.match_info["alias"]
    if alias == LATEST:
        raise ValidationFailed(
            "latest always means the newest live version and cannot be set",
            errors=[{"field": "alias", "message": "reserved"}],
        )
    if not ALIAS.match(alias):
        raise ValidationFailed(
            "an alias is a lowercase letter then up to 62 of a-z, 0-9, '-' and '_'",
            errors=[{"field": "alias", "message": "invalid"}],
        )
    return alias


@routes.put("/v1/destinations/{owner}/{name}/aliases/{alias}")
@operation(
    "Point an alias at a version",
    tag="aliases",
    request=AliasTarget,
    responses={200: AliasResource},
    errors=(404, 409),
)
async def put_alias(request: web.Request) -> web.Response:
    ref = requests.path_destination(request)
    alias = _alias_of(request)
    target = await requests.read_json(request, AliasTarget)

    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await store.lock_destination(conn, ref):
            raise NotFound(f"no destination {ref}")
        version_id = await resolve(conn, ref, target.version_id)
        version = await store.get(conn, ref, version_id)
        if version is None:
            raise NotFound(f"no version {version_id} in {ref}")
        if version["deleted_at"] is not None:
            raise Conflict(f"version {version_id} was deleted; an alias cannot name it")
        move = await store.set_alias(
            conn, ref, alias, version_id, caller_of(request).name
        )

    assert move.updated_at is not None
    assert move.version_id is not None
    return requests.json_response(
        AliasResource(
            alias=alias,
            version_id=move.version_id,
            previous_version_id=move.previous_version_id,
            updated_at=move.updated_at,
        )
    )


@routes.delete("/v1/destinations/{owner}/{name}/aliases/{alias}")
@operation(
    "Remove an alias",
    tag="aliases",
    responses={204: None},
    errors=(404, 422),
)
async def delete_alias(request: web.Request) -> web.Response:
    ref = requests.path_destination(request)
    alias = _alias_of(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await store.lock_destination(conn, ref):
            raise NotFound(f"no destination {ref}")
        removed = await store.remove_alias(conn, ref, alias, caller_of(request).name)
        if removed is None:
            raise NotFound(f"no alias {alias} in {ref}")
    return web.Response(status=204)


@routes.get("/v1/destinations/{owner}/{name}/aliases")
@operation(
    "A destination's aliases",
    tag="aliases",
    responses={200: AliasList},
    errors=(404,),
)
async def list_aliases(request: web.Request) -> web.Response:
    ref = requests.path_destination(request)
    async with request.app[POOL].acquire() as conn:
        await require_destination(conn, ref)
        rows = await store.aliases(conn, ref)
    return requests.json_response(
        AliasList(results=[AliasResource(**dict(row)) for row in rows])
    )


@routes.get("/v1/destinations/{owner}/{name}/aliases/{alias}/history")
@operation(
    "Every move of an alias, oldest first",
    tag="aliases",
    responses={200: AliasHistory},
    errors=(404,),
)
async def alias_history(request: web.Request) -> web.Response:
    """Every move of the alias, oldest first; a removal has no version_id."""
    ref = requests.path_destination(request)
    alias = request.match_info["alias"]
    async with request.app[POOL].acquire() as conn:
        rows = await store.alias_history(conn, ref, alias)
    if not rows:
        raise NotFound(f"alias {alias} of {ref} has never been set")
    return requests.json_response(
        AliasHistory(
            alias=alias,
            moves=[
                AliasMoveResource(
                    version_id=row["version_id"],
                    previous_version_id=row["previous_version_id"],
                    caller=row["caller"],
                    moved_at=row["moved_at"],
                )
                for row in rows
            ],
        )
    )
