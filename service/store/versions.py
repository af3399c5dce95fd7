"""Versions of destinations, and the aliases that name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from ..domain.names import ModelRef

# Every version read carries its lineage: the training that made it, if any.
SELECT_VERSION_WITH_LINEAGE = """
SELECT v.*, t.trainer, t.input, t.caller, t.metadata, t.replicate_id,
       coalesce((SELECT array_agg(a.alias ORDER BY a.alias) FROM aliases a
                 WHERE a.owner = v.owner AND a.name = v.name
                   AND a.version_id = v.version_id), '{}') AS aliases
FROM versions v
LEFT JOIN trainings t ON t.id = v.training_id
"""

SELECT_VERSION = (
    SELECT_VERSION_WITH_LINEAGE
    + " WHERE v.owner = $1 AND v.name = $2 AND v.version_id = $3"
)

SELECT_LATEST_ID = """
SELECT version_id FROM versions
WHERE owner = $1 AND name = $2 AND deleted_at IS NULL
ORDER BY created_at DESC, version_id DESC
LIMIT 1
"""

COUNT_LIVE = """
SELECT count(*) FROM versions WHERE owner = $1 AND name = $2 AND deleted_at IS NULL
"""

UPDATE_VERSION = """
UPDATE versions
SET description = CASE WHEN $4 THEN $5 ELSE description END,
    tags = coalesce($6, tags)
WHERE owner = $1 AND name = $2 AND version_id = $3
RETURNING version_id
"""

# The first deletion's time stands; a version newly marked returns its mark, one
# marked before returns nothing.
MARK_DELETED = """
UPDATE versions SET deleted_at = now()
WHERE owner = $1 AND name = $2 AND version_id = $3 AND deleted_at IS NULL
RETURNING deleted_at
"""

UNMARK_DELETED = """
UPDATE versions SET deleted_at = NULL
WHERE owner = $1 AND name = $2 AND version_id = $3
  AND ($4::timestamptz IS NULL OR deleted_at = $4)
"""

IMPORT_VERSION = """
INSERT INTO versions (owner, name, version_id, created_at, source)
VALUES ($1, $2, $3, $4, 'sync')
ON CONFLICT (owner, name, version_id) DO NOTHING
RETURNING version_id
"""

LOCK_DESTINATION = """
SELECT 1 FROM destinations WHERE owner = $1 AND name = $2 FOR UPDATE
"""

SELECT_ALIAS = """
SELECT version_id FROM aliases WHERE owner = $1 AND name = $2 AND alias = $3
"""

UPSERT_ALIAS = """
INSERT INTO aliases (owner, name, alias, version_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (owner, name, alias)
DO UPDATE SET version_id = excluded.version_id, updated_at = now()
RETURNING alias, version_id, updated_at
"""

DELETE_ALIAS = """
DELETE FROM aliases WHERE owner = $1 AND name = $2 AND alias = $3
RETURNING version_id
"""

INSERT_ALIAS_HISTORY = """
INSERT INTO alias_history (owner, name, alias, version_id, previous_version_id, caller)
VALUES ($1, $2, $3, $4, $5, $6)
"""

SELECT_ALIASES = """
SELECT alias, version_id, updated_at FROM aliases
WHERE owner = $1 AND name = $2 ORDER BY alias
"""

SELECT_ALIAS_HISTORY = """
SELECT id, alias, version_id, previous_version_id, caller, moved_at
FROM alias_history
WHERE owner = $1 AND name = $2 AND alias = $3
ORDER BY id
"""

SELECT_ALIASES_OF = """
SELECT alias FROM aliases
WHERE owner = $1 AND name = $2 AND version_id = $3 ORDER BY alias
"""


@dataclass(frozen=True)
class VersionFilter:
    created_after: datetime | None = None
    created_before: datetime | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    include_deleted: bool = False


@dataclass(frozen=True)
class Position:
    """Where a page ends: the keyset of the newest-first order."""

    created_at: datetime
    version_id: str


async def page(
    conn: asyncpg.Connection,
    destination: ModelRef,
    where: VersionFilter,
    *,
    after: Position | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of versions, newest first.

    The order is (created_at, version_id) descending, which the index
    versions_newest_first serves directly: a page costs the same however many
    versions come before it, and versions recorded during a walk land before
    its cursor instead of shifting later pages.
    """
    args: list[Any] = [destination.owner, destination.name]

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    clauses = ["v.owner = $1", "v.name = $2"]
    if not where.include_deleted:
        clauses.append("v.deleted_at IS NULL")
    if where.created_after is not None:
        clauses.append(f"v.created_at > {param(where.created_after)}")
    if where.created_before is not None:
        clauses.append(f"v.created_at < {param(where.created_before)}")
    if where.tags:
        clauses.append(f"v.tags @> {param(list(where.tags))}::text[]")
    if where.metadata:
        clauses.append(f"t.metadata @> {param(where.metadata)}::jsonb")
    if after is not None:
        clauses.append(
            f"(v.created_at, v.version_id) < ({param(after.created_at)}, "
            f"{param(after.version_id)})"
        )
    sql = (
        SELECT_VERSION_WITH_LINEAGE
        + " WHERE "
        + " AND ".join(clauses)
        + f" ORDER BY v.created_at DESC, v.version_id DESC LIMIT {param(limit)}"
    )
    return await conn.fetch(sql, *args)


async def get(
    conn: asyncpg.Connection, destination: ModelRef, version_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        SELECT_VERSION, destination.owner, destination.name, version_id
    )


async def latest_id(conn: asyncpg.Connection, destination: ModelRef) -> str | None:
    return await conn.fetchval(SELECT_LATEST_ID, destination.owner, destination.name)


async def count_live(conn: asyncpg.Connection, destination: ModelRef) -> int:
    return await conn.fetchval(COUNT_LIVE, destination.owner, destination.name)


async def update(
    conn: asyncpg.Connection,
    destination: ModelRef,
    version_id: str,
    *,
    description: str | None,
    set_description: bool,
    tags: list[str] | None,
) -> bool:
    """Change a version's description and tags; False if there is no such version."""
    updated = await conn.fetchval(
        UPDATE_VERSION,
        destination.owner,
        destination.name,
        version_id,
        set_description,
        description,
        tags,
    )
    return updated is not None


async def mark_deleted(
    conn: asyncpg.Connection, destination: ModelRef, version_id: str
) -> datetime | None:
    """Mark a version deleted; its new mark, or None if it was marked before."""
    return await conn.fetchval(
        MARK_DELETED, destination.owner, destination.name, version_id
    )


async def unmark_deleted(
    conn: asyncpg.Connection,
    destination: ModelRef,
    version_id: str,
    marked: datetime | None,
) -> None:
    """Make a version live again: only if its mark is `marked`, or whatever its
    mark when `marked` is None."""
    await conn.execute(
        UNMARK_DELETED, destination.owner, destination.name, version_id, marked
    )


async def import_version(
    conn: asyncpg.Connection,
    destination: ModelRef,
    version_id: str,
    created_at: datetime,
) -> bool:
    """Record a version found on Replicate; False if Tuneyard already had it."""
    inserted = await conn.fetchval(
        IMPORT_VERSION, destination.owner, destination.name, version_id, created_at
    )
    return inserted is not None


# Aliases -------------------------------------------------------------------


@dataclass(frozen=True)
class AliasMove:
    alias: str
    version_id: str | None
    previous_version_id: str | None
    updated_at: datetime | None


async def lock_destination(conn: asyncpg.Connection, destination: ModelRef) -> bool:
    """Serialise alias moves within a destination; False if it does not exist."""
    found = await conn.fetchval(LOCK_DESTINATION, destination.owner, destination.name)
    return found is not None


async def set_alias(
    conn: asyncpg.Connection,
    destination: ModelRef,
    alias: str,
    version_id: str,
    caller: str,
) -> AliasMove:
    """Point `alias` at a version and record the move; call with the destination
    locked (lock_destination) in the same transaction, so the previous target read
    here is the one replaced."""
    previous = await conn.fetchval(
        SELECT_ALIAS, destination.owner, destination.name, alias
    )
    row = await conn.fetchrow(
        UPSERT_ALIAS, destination.owner, destination.name, alias, version_id
    )
    await conn.execute(
        INSERT_ALIAS_HISTORY,
        destination.owner,
        destination.name,
        alias,
        version_id,
        previous,
        caller,
    )
    return AliasMove(alias, version_id, previous, row["updated_at"])


async def remove_alias(
    conn: asyncpg.Connection, destination: ModelRef, alias: str, caller: str
) -> AliasMove | None:
    """Remove an alias and record it; None if there was no such alias."""
    previous = await conn.fetchval(
        DELETE_ALIAS, destination.owner, destination.name, alias
    )
    if previous is None:
        return None
    await conn.execute(
        INSERT_ALIAS_HISTORY,
        destination.owner,
        destination.name,
        alias,
        None,
        previous,
        caller,
    )
    return AliasMove(alias, None, previous, None)


async def resolve_alias(
    conn: asyncpg.Connection, destination: ModelRef, alias: str
) -> str | None:
    return await conn.fetchval(SELECT_ALIAS, destination.owner, destination.name, alias)


async def aliases(
    conn: asyncpg.Connection, destination: ModelRef
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_ALIASES, destination.owner, destination.name)


async def aliases_of(
    conn: asyncpg.Connection, destination: ModelRef, version_id: str
) -> list[str]:
    rows = await conn.fetch(
        SELECT_ALIASES_OF, destination.owner, destination.name, version_id
    )
    return [row["alias"] for row in rows]


async def alias_history(
    conn: asyncpg.Connection, destination: ModelRef, alias: str
) -> list[asyncpg.Record]:
    return await conn.fetch(
        SELECT_ALIAS_HISTORY, destination.owner, destination.name, alias
    )
