"""Numbered SQL migrations, applied in order under an advisory lock.

Files are named `NNNN_description.sql`. Each runs in its own transaction and is
recorded in `schema_migrations` with the SHA-256 of its text; a recorded file whose
text has since changed is refused, because the database no longer matches what the
file says and nothing can tell which is right.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from ..errors import MigrationError
from ..logs import get_logger

log = get_logger()

# Any constant works as long as every replica uses the same one; this is
# int.from_bytes(b"tuneyard") truncated to a signed 64-bit value.
MIGRATION_LOCK_KEY = 0x74756E6579617264 & 0x7FFFFFFFFFFFFFFF

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
SCHEMA_MIGRATIONS_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"
SELECT_APPLIED = (
    "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
)
INSERT_APPLIED = (
    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str


def default_directory() -> Path:
    """The migrations shipped with the code.

    An installed wheel carries them inside the package; a source checkout (and an
    editable install) keeps them at the top of the repository.
    """
    bundled = resources.files("service") / "migrations"
    if bundled.is_dir():
        return Path(str(bundled))
    return Path(__file__).resolve().parents[2] / "migrations"


def load(directory: Path | None = None) -> list[Migration]:
    """Read the migration files, checking their names and numbering."""
    directory = directory or default_directory()
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")

    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name} is not named NNNN_description.sql"
            )
        version, name = int(match[1]), match[2]
        migrations.append(Migration(version, name, path.read_text(encoding="utf-8")))

    expected = list(range(1, len(migrations) + 1))
    if [m.version for m in migrations] != expected:
        found = ", ".join(m.file_name for m in migrations)
        raise MigrationError(f"migrations must be numbered 0001 upwards: {found}")
    return migrations


async def applied(conn: asyncpg.Connection) -> list[AppliedMigration]:
    """The migrations recorded in the database, oldest first."""
    if not await conn.fetchval(SCHEMA_MIGRATIONS_EXISTS):
        return []
    rows = await conn.fetch(SELECT_APPLIED)
    return [AppliedMigration(r["version"], r["name"], r["checksum"]) for r in rows]


def pending(
    migrations: list[Migration], done: list[AppliedMigration]
) -> list[Migration]:
    """The migrations still to apply; raises if an applied file has changed.

    Versions recorded in the database but unknown to this code are allowed: during a
    rolling upgrade the migration job runs before every old replica has stopped.
    """
    recorded = {a.version: a for a in done}
    for migration in migrations:
        record = recorded.get(migration.version)
        if record is not None and record.checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.file_name} was changed after it was applied; "
                "restore the applied text and put the change in a new migration"
            )
    return [m for m in migrations if m.version not in recorded]


async def check_current(conn: asyncpg.Connection, migrations: list[Migration]) -> None:
    """Raise MigrationError unless every migration is applied unchanged."""
    missing = pending(migrations, await applied(conn))
    if missing:
        names = ", ".join(m.file_name for m in missing)
        raise MigrationError(f"migrations not applied: {names}; run `tuneyard migrate`")


async def migrate(
    conn: asyncpg.Connection, migrations: list[Migration]
) -> list[Migration]:
    """Apply the pending migrations in order; return those this call applied.

    The session-level advisory lock makes concurrent callers (replicas starting
    together, or a migration job beside them) take turns: the second one finds the
    work done and applies nothing.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(CREATE_SCHEMA_MIGRATIONS)
        todo = pending(migrations, await applied(conn))
        for migration in todo:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    INSERT_APPLIED,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("migration_applied", migration=migration.file_name)
        return todo
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
