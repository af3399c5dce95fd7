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
