"""The order of a training's statuses: forward only, finished is final."""

from __future__ import annotations

import pytest

from service.domain.status import Status, advance, from_replicate

Q, SUB, RUN = Status.QUEUED, Status.SUBMITTED, Status.RUNNING
OK, FAIL, CANCEL = Status.SUCCEEDED, Status.FAILED, Status.CANCELED


@pytest.mark.parametrize(
    ("current", "reported", "expected"),
    [
        (Q, SUB, SUB),
        (Q, RUN, RUN),
        (Q, OK, OK),
        (SUB, RUN, RUN),
        (RUN, OK, OK),
        (RUN, FAIL, FAIL),
        (SUB, CANCEL, CANCEL),
        (Q, CANCEL, CANCEL),
        # Late or repeated reports change nothing.
        (RUN, SUB, None),
        (RUN, RUN, None),
        (OK, RUN, None),
        (OK, SUB, None),
        # A finished training stays as it finished.
        (OK, FAIL, None),
        (FAIL, OK, None),
        (CANCEL, OK, None),
        # Unknown reports change nothing.
        (RUN, None, None),
    ],
)
def test_advance_moves_forward_only(
    current: Status, reported: Status | None, expected: Status | None
) -> None:
    assert advance(current, reported) == expected


@pytest.mark.parametrize(
    ("replicate", "status"),
    [
        ("starting", SUB),
        ("processing", RUN),
        ("succeeded", OK),
        ("failed", FAIL),
        ("canceled", CANCEL),
        ("aborted", FAIL),
        ("queued_for_gpu", None),
        (None, None),
    ],
)
def test_replicate_statuses_map_to_tuneyard_statuses(
    replicate: str | None, status: Status | None
) -> None:
    assert from_replicate(replicate) == status
