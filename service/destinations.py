"""What spans a destination's record and Replicate: ensuring the model exists,
importing versions made elsewhere, deleting a version."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from .config import Settings
from .domain.names import ModelRef
from .errors import Conflict, NotFound
from .logs import get_logger
from .replicate.client import ReplicateClient
from .replicate.errors import ReplicateConflict, ReplicateNotFound, ReplicateRefused
from .store import destinations as store
from .store import versions as versions_store
from .store.trainings import parse_time

log = get_logger()


async def ensure(
    pool: asyncpg.Pool,
    client: ReplicateClient,
    settings: Settings,
    ref: ModelRef,
    *,
    wanted: dict[str, str | None] | None = None,
) -> None:
    """Make sure the model exists on Replicate, creating it if needed.

    Settings come from `wanted` (a training's destination_settings), else the
    destination's own, else the configured defaults. A create refused because the
    model already exists (another replica, a person) counts as success. Once known
    to exist, the destination is marked so no replica asks again.
    """
    async with pool.acquire() as conn:
        row = await store.get(conn, ref)
    if row is not None and row.ensured_at is not None:
        return
    try:
        await client.get_model(ref)
    except ReplicateNotFound:
        wanted = wanted or {}
        visibility = (
            wanted.get("visibility")
            or (row.visibility if row else None)
            or settings.default_visibility
        )
        hardware = (
            wanted.get("hardware")
            or (row.hardware if row else None)
            or settings.default_hardware
        )
        description = wanted.get("description") or (row.description if row else None)
        try:
            await client.create_model(
                ref, visibility=visibility, hardware=hardware, description=description
            )
            log.info("destination_created", destination=str(ref))
        except ReplicateConflict:
            log.info("destination_created_elsewhere", destination=str(ref))
    async with pool.acquire() as conn:
        await store.mark_ensured(conn, ref)


async def sync(
    pool: asyncpg.Pool, client: ReplicateClient, ref: ModelRef
) -> dict[str, int]:
    """Import the versions Replicate has and Tuneyard does not, walking every page.

    A destination Tuneyard has never seen is taken on if the model exists on
    Replicate. Running it again imports nothing new.
    """
    try:
        await client.get_model(ref)
    except ReplicateNotFound:
        raise NotFound(f"no destination {ref} on Replicate") from None
    async with pool.acquire() as conn:
        await store.record_existing(conn, ref)

    seen = imported = 0
    async for version in client.iter_versions(ref):
        seen += 1
        created_at = parse_time(version.created_at) or datetime.now(UTC)
        async with pool.acquire() as conn:
            if await versions_store.import_version(conn, ref, version.id, created_at):
                imported += 1
    log.info("destination_synced", destination=str(ref), seen=seen, imported=imported)
    return {"seen": seen, "imported": imported}


async def delete_version(
    pool: asyncpg.Pool, client: ReplicateClient, ref: ModelRef, version_id: str
) -> None:
    """Delete a version on Replicate and record it deleted.

    A version an alias points at is refused: moving production off a deleted
    version must be a decision, not a side effect. Replicate refuses some deletions
    (public models, versions others ran, a training's base); the refusal is a 409
    carrying Replicate's reason. A version Replicate no longer has is recorded as
    deleted.

    The version is marked deleted before Replicate is asked, under the lock that
    alias moves take (and an alias move refuses a deleted version): so no alias
    can come to name it while Replicate deletes it. A refusal takes the mark
    back: this request's own mark, or any mark when Replicate says it keeps the
    version (409), since it then plainly exists. An answer that never comes
    leaves the mark: the caller meant the version gone, is answered 5xx, and its
    repeated DELETE asks Replicate again, as a DELETE of a version already marked
    always does (a crash may have left a mark without a deletion). Never taking
    a mark back on a lost answer also means a slow request cannot revive a
    version that a concurrent one has meanwhile deleted.
    """
    async with pool.acquire() as conn, conn.transaction():
        if not await versions_store.lock_destination(conn, ref):
            raise NotFound(f"no destination {ref}")
        row = await versions_store.get(conn, ref, version_id)
        if row is None:
            raise NotFound(f"no version {version_id} in {ref}")
        aliases = await versions_store.aliases_of(conn, ref, version_id)
        if aliases:
            raise Conflict(
                f"version {version_id} is aliased as {', '.join(aliases)}; "
                "move or remove the alias first"
            )
        marked = await versions_store.mark_deleted(conn, ref, version_id)
    try:
        await client.delete_version(ref, version_id)
    except ReplicateNotFound:
        log.info("version_already_gone", destination=str(ref), version_id=version_id)
    except ReplicateRefused as exc:
        kept = isinstance(exc, ReplicateConflict)
        if kept or marked is not None:
            await _unmark_deleted(pool, ref, version_id, None if kept else marked)
        raise Conflict(
            f"Replicate refused to delete version {version_id}: {exc.detail}",
            replicate_status=exc.http_status,
        ) from None
    log.info("version_deleted", destination=str(ref), version_id=version_id)


async def _unmark_deleted(
    pool: asyncpg.Pool, ref: ModelRef, version_id: str, marked: datetime | None
) -> None:
    """Take back a deletion mark: this request's (`marked`), or any (None)."""
    try:
        async with pool.acquire() as conn:
            await versions_store.unmark_deleted(conn, ref, version_id, marked)
    except Exception:
        # The mark stays; a repeated DELETE asks Replicate again.
        log.warning(
            "version_deletion_mark_kept",
            destination=str(ref),
            version_id=version_id,
            exc_info=True,
        )
