"""Fixtures shared by every test folder.

The database server is TEST_DATABASE_URL when set, otherwise an embedded PostgreSQL
(data under .tuneyard/test-postgres). Each test session gets a fresh database with
the migrations applied; integration and acceptance tests empty its tables first.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from service.store.embedded import EmbeddedPostgres
from service.store.pool import create_pool

from .support import databases
from .support.proxy import DatabaseProxy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of the test server's maintenance database, for creating others."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    embedded = EmbeddedPostgres(ROOT / ".tuneyard" / "test")
    embedded.start()
    try:
        yield embedded.url("postgres")
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """This session's own database, migrated."""
    url = asyncio.run(databases.create_database(server_url))
    asyncio.run(databases.migrate(url))
    yield url
    asyncio.run(databases.drop_database(server_url, url))


@pytest.fixture
def clean_database(database_url: str) -> str:
    """The session's database with every table emptied: each test starts alike."""
    asyncio.run(databases.empty_tables(database_url))
    return database_url


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    """A database of its own with no tables at all, dropped after the test."""
    url = await databases.create_database(server_url, prefix="tuneyard_empty")
    yield url
    await databases.drop_database(server_url, url)


@pytest.fixture
async def pool(clean_database: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool set up as the service sets up its own (JSON codecs included)."""
    pool = await create_pool(clean_database, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture
async def db_proxy(clean_database: str) -> AsyncIterator[DatabaseProxy]:
    """A proxy to the test database that the test can cut, restore or hold."""
    proxy = DatabaseProxy(databases.endpoint(clean_database))
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
def proxied_database_url(clean_database: str, db_proxy: DatabaseProxy) -> str:
    return databases.via(clean_database, "127.0.0.1", db_proxy.port)
