"""Migrations against a real PostgreSQL: applied once, in order, under a lock."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from service.errors import MigrationError
from service.store import migrations


@pytest.fixture
async def conn(empty_database: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(empty_database)
    yield conn
    await conn.close()


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations.default_directory(), folder)
    return folder


async def test_migrate_applies_every_file_in_order_with_checksums(
    conn: asyncpg.Connection,
) -> None:
    files = migrations.load()

    applied = await migrations.migrate(conn, files)

    assert applied == files
    recorded = await migrations.applied(conn)
    assert [(r.version, r.checksum) for r in recorded] == [
        (m.version, m.checksum) for m in files
    ]


async def test_second_migrate_applies_nothing(conn: asyncpg.Connection) -> None:
    files = migrations.load()
    await migrations.migrate(conn, files)

    assert await migrations.migrate(conn, files) == []


async def test_changed_applied_file_is_refused(
    conn: asyncpg.Connection, migrations_copy: Path
) -> None:
    await migrations.migrate(conn, migrations.load(migrations_copy))
    first = sorted(migrations_copy.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an edit after the fact\n")

    with pytest.raises(MigrationError, match=f"{first.name} was changed after"):
        await migrations.migrate(conn, migrations.load(migrations_copy))


async def test_failing_migration_leaves_nothing_of_itself(
    conn: asyncpg.Connection, migrations_copy: Path
) -> None:
    count = len(migrations.load(migrations_copy))
    (migrations_copy / f"{count + 1:04d}_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;"
    )

    with pytest.raises(asyncpg.UndefinedTableError):
        await migrations.migrate(conn, migrations.load(migrations_copy))

    assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    assert len(await migrations.applied(conn)) == count


async def test_check_current_names_pending_files(conn: asyncpg.Connection) -> None:
    with pytest.raises(MigrationError, match=r"not applied: 0001_initial\.sql"):
        await migrations.check_current(conn, migrations.load())


async def test_concurrent_migrate_calls_apply_each_file_once(
    empty_database: str,
) -> None:
    files = migrations.load()
    conns = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrations.migrate(c, files) for c in conns))
    finally:
        for c in conns:
            await c.close()

    applied_versions = sorted(m.version for result in results for m in result)
    assert applied_versions == [m.version for m in files]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["0001_a.sql", "0003_c.sql"], "numbered 0001 upwards"),
        (["1_a.sql"], "is not named NNNN_description.sql"),
        (["0001_Bad-Name.sql"], "is not named NNNN_description.sql"),
    ],
)
def test_badly_named_or_numbered_files_are_refused(
    tmp_path: Path, names: list[str], message: str
) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")

    with pytest.raises(MigrationError, match=message):
        migrations.load(tmp_path)
