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

import pytest

from .results import KNOWN_BUG, ScenarioResult


def settle(
    scenario: ScenarioResult,
    known: dict[str, str],
    failing: dict[str, str],
    *,
    intermittent: Collection[str] = (),
) -> None:
    """`known`: case → write-up. `failing`: case → what happened in this run.
    `intermittent`: known cases whose absence from one run proves nothing."""
    unexpected = {case: what for case, what in failing.items() if case not in known}
    assert not unexpected, f"failed beyond the known bugs: {unexpected}"
    fixed = sorted(set(known) - set(failing) - set(intermittent))
    assert not fixed, f"no longer failing, so fixed: {fixed}; take them off the list"
    if not failing:
        return
    scenario.bugs = [
        {"case": case, "this_run": what, "write_up": known[case]}
        for case, what in failing.items()
    ]
    scenario.outcome = KNOWN_BUG
    pytest.xfail(f"known service bugs reproduce: {sorted(failing)}")
