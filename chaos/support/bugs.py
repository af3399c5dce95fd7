"""Service bugs a scenario has found and written up, until the service is fixed.

A scenario does not work around a bug it finds. It lists the failing cases it
knows (its KNOWN_BUGS, each with a write-up for the lead) and checks everything
else strictly: a failure not on the list fails the run, and so does a listed
case that no longer fails (it was fixed: take it off the list), unless the case
depends on timing and may simply not have happened this time. While listed
failures reproduce, the scenario is reported as failing (an xfail), with the
write-ups in the report.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass

import pytest

from .results import KNOWN_BUG, ScenarioResult


@dataclass(frozen=True)
class Bug:
    """One bug's write-up."""

    # high: a promise about data or money breaks; medium: availability or a
    # 5xx for bad input; low: the wrong shape or status of an answer.
    severity: str
    # What breaks, in a line, for an operator.
    summary: str
    # How it happens, where in the code, and what should happen instead.
    details: str


def settle(
    scenario: ScenarioResult,
    known: dict[str, Bug],
    failing: dict[str, str],
    *,
    intermittent: Collection[str] = (),
) -> None:
    """`known`: case → its bug. `failing`: case → what happened in this run.
    `intermittent`: known cases whose absence from one run proves nothing."""
    unexpected = {case: what for case, what in failing.items() if case not in known}
    assert not unexpected, f"failed beyond the known bugs: {unexpected}"
    fixed = sorted(set(known) - set(failing) - set(intermittent))
    assert not fixed, f"no longer failing, so fixed: {fixed}; take them off the list"
    unseen = sorted(set(known) - set(failing))
    if unseen:
        # A timing-dependent bug that stays unseen run after run may be fixed.
        scenario.measure(known_bugs_not_seen_in_this_run=", ".join(unseen))
    if not failing:
        return
    scenario.bugs = [
        {"case": case, "this_run": what, **asdict(known[case])}
        for case, what in failing.items()
    ]
    scenario.outcome = KNOWN_BUG
    pytest.xfail(f"known service bugs reproduce: {sorted(failing)}")
