"""Destinations: the Replicate models trainings write into."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

import asyncpg

from ..domain.names import ModelRef


@dataclass(frozen=True)
class DestinationRecord:
    owner: str
    name: str
    visibility: str | None
    hardware: str | None
    description: str | None
    ensured_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> DestinationRecord:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.owner, self.name)


SELECT_DESTINATION = "SELECT * FROM destinations WHERE owner = $1 AND name = $2"

MARK_ENSURED = """
UPDATE destinations SET ensured_at = now(), updated_at = now()
WHERE owner = $1 AND name = $2 AND ensured_at IS NULL
"""


async def get(conn: asyncpg.Connection, ref: ModelRef) -> DestinationRecord | None:
    row = await conn.fetchrow(SELECT_DESTINATION, ref.owner, ref.name)
    return None if row is None else DestinationRecord.from_row(row)


async def mark_ensured(conn: asyncpg.Connection, ref: ModelRef) -> None:
    """Remember that the model exists on Replicate, so no replica asks again."""
    await conn.execute(MARK_ENSURED, ref.owner, ref.name)


UPSERT_SETTINGS = """
INSERT INTO destinations (owner, name, visibility, hardware, description)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (owner, name) DO UPDATE
SET visibility = excluded.visibility,
    hardware = excluded.hardware,
    description = excluded.description,
    updated_at = now()
RETURNING *, (xmax = 0) AS inserted
"""

INSERT_KNOWN = """
INSERT INTO destinations (owner, name, ensured_at) VALUES ($1, $2, now())
ON CONFLICT (owner, name)
DO UPDATE SET ensured_at = coalesce(destinations.ensured_at, now())
"""


async def put_settings(
    conn: asyncpg.Connection,
    ref: ModelRef,
    *,
    visibility: str | None,
    hardware: str | None,
    description: str | None,
) -> tuple[DestinationRecord, bool]:
    """Create or replace a destination's settings; True if it was created."""
    row = await conn.fetchrow(
        UPSERT_SETTINGS, ref.owner, ref.name, visibility, hardware, description
    )
    return DestinationRecord.from_row(row), row["inserted"]


async def record_existing(conn: asyncpg.Connection, ref: ModelRef) -> None:
    """Know a destination found on Replicate (e.g. made before Tuneyard)."""
    await conn.execute(INSERT_KNOWN, ref.owner, ref.name)


async def page(
    conn: asyncpg.Connection,
    *,
    owners: tuple[str, ...],
    after: ModelRef | None,
    limit: int,
) -> list[DestinationRecord]:
    """Destinations in name order (of these owners, when given); the primary key
    serves the order and the cursor."""
    args: list[object] = []
    clauses = []
    if owners:
        args.append(list(owners))
        clauses.append(f"owner = ANY(${len(args)})")
    if after is not None:
        args += [after.owner, after.name]
        clauses.append(f"(owner, name) > (${len(args) - 1}, ${len(args)})")
    sql = "SELECT * FROM destinations"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    args.append(limit)
    sql += f" ORDER BY owner, name LIMIT ${len(args)}"
    return [DestinationRecord.from_row(row) for row in await conn.fetch(sql, *args)]
