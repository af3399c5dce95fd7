"""A training's statuses and the one rule that orders them.

Tuneyard's statuses are its own; Replicate's are mapped onto them. A status only
ever moves forward: a webhook that arrives late (`processing` after `succeeded`)
or twice changes nothing, and a finished training stays finished.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"  # accepted; not yet on Replicate
    SUBMITTED = "submitted"  # created on Replicate, not yet running
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})

_RANK = {
    Status.QUEUED: 0,
    Status.SUBMITTED: 1,
    Status.RUNNING: 2,
    Status.SUCCEEDED: 3,
    Status.FAILED: 3,
    Status.CANCELED: 3,
}

# Replicate's statuses. `aborted` (2026) means the training ended before it ran,
# e.g. at a deadline: for a caller that is a failure.
_FROM_REPLICATE = {
    "starting": Status.SUBMITTED,
    "processing": Status.RUNNING,
    "succeeded": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELED,
    "aborted": Status.FAILED,
}


def from_replicate(status: str | None) -> Status | None:
    """Tuneyard's status for one of Replicate's; None for one it does not know."""
    return _FROM_REPLICATE.get(status or "")


def advance(current: Status, reported: Status | None) -> Status | None:
    """The status a training moves to on a report, or None if it stays put."""
    if reported is None or current.is_terminal:
        return None
    if _RANK[reported] <= _RANK[current]:
        return None
    return reported
