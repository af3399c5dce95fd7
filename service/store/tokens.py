"""Callers' API tokens: issued once, stored as hashes, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

TOKEN_PREFIX = "ty_"  # noqa: S105 (a prefix, not a secret)


@dataclass(frozen=True)
class TokenRecord:
    name: str
    owners: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


INSERT = """
INSERT INTO api_tokens (name, token_hash, owners) VALUES ($1, $2, $3)
ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
RETURNING id
"""

SELECT_ACTIVE_BY_HASH = """
SELECT name, owners, created_at, revoked_at FROM api_tokens
WHERE token_hash = $1 AND revoked_at IS NULL
"""

SELECT_ALL = """
SELECT name, owners, created_at, revoked_at FROM api_tokens ORDER BY name, created_at
"""

REVOKE = """
UPDATE api_tokens SET revoked_at = now()
WHERE name = $1 AND revoked_at IS NULL
RETURNING id
"""


async def create(conn: asyncpg.Connection, name: str, owners: list[str]) -> str | None:
    """Issue a token; it is returned this once. None if `name` has an active one."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = await conn.fetchval(INSERT, name, hash_token(token), sorted(set(owners)))
    return None if created is None else token


async def find(conn: asyncpg.Connection, token: str) -> TokenRecord | None:
    row = await conn.fetchrow(SELECT_ACTIVE_BY_HASH, hash_token(token))
    return None if row is None else _record(row)


async def all_tokens(conn: asyncpg.Connection) -> list[TokenRecord]:
    return [_record(row) for row in await conn.fetch(SELECT_ALL)]


async def revoke(conn: asyncpg.Connection, name: str) -> bool:
    return await conn.fetchval(REVOKE, name) is not None


def _record(row: asyncpg.Record) -> TokenRecord:
    return TokenRecord(
        row["name"], tuple(row["owners"]), row["created_at"], row["revoked_at"]
    )
