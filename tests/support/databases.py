"""Creating and dropping the databases tests run against."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from service.store import migrations

# Tables whose rows tests make; emptied before each test. schema_migrations stays.
APP_TABLES = """
SELECT string_agg(quote_ident(tablename), ', ')
FROM pg_tables
WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
"""


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@dataclass(frozen=True)
class Endpoint:
    """Where a PostgreSQL URL points: a TCP host and port, or a Unix socket."""

    host: str | None
    port: int
    socket_path: str | None


def endpoint(url: str) -> Endpoint:
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    port = parts.port or 5432
    if socket_dir is not None and socket_dir.startswith("/"):
        return Endpoint(None, port, f"{socket_dir}/.s.PGSQL.{port}")
    return Endpoint(parts.hostname or "127.0.0.1", port, None)


def via(url: str, host: str, port: int) -> str:
    """The same URL, reaching the server through host:port instead."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    password = f":{parts.password}" if parts.password else ""
    return urlunsplit(
        ("postgresql", f"{user}{password}@{host}:{port}", parts.path, "", "")
    )


async def create_database(server_url: str, prefix: str = "tuneyard_test") -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def migrate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn, migrations.load())
    finally:
        await conn.close()


async def empty_tables(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetchval(APP_TABLES)
        if tables:
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
