"""Which migrations are pending, and refusing an applied file that changed."""

from __future__ import annotations

import pytest

from service.errors import MigrationError
from service.store.migrations import AppliedMigration, Migration, pending

FIRST = Migration(1, "initial", "CREATE TABLE a (id int);")
SECOND = Migration(2, "more", "CREATE TABLE b (id int);")


def applied(*migrations: Migration) -> list[AppliedMigration]:
    return [AppliedMigration(m.version, m.name, m.checksum) for m in migrations]


def test_nothing_applied_means_everything_pending() -> None:
    assert pending([FIRST, SECOND], []) == [FIRST, SECOND]


def test_applied_migrations_are_not_pending() -> None:
    assert pending([FIRST, SECOND], applied(FIRST)) == [SECOND]


def test_changed_applied_migration_is_refused_by_name() -> None:
    changed = Migration(1, "initial", "CREATE TABLE a (id bigint);")

    with pytest.raises(MigrationError, match=r"0001_initial\.sql was changed"):
        pending([changed, SECOND], applied(FIRST))


def test_versions_unknown_to_this_code_are_tolerated() -> None:
    assert pending([FIRST], applied(FIRST, SECOND)) == []
