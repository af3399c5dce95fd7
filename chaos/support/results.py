"""What each scenario measured, kept in a results file as the run goes.

A scenario fills in a `ScenarioResult` (the `scenario` fixture); when the test
ends, its outcome is added and the result is appended to the file as one JSON
line. The report reads the file back, so a run that fails half-way still
reports what it measured.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "chaos" / ".results"
# The runner points this at the run's own file; a bare `pytest chaos` uses the
# default.
RESULTS_FILE = Path(os.environ.get("CHAOS_RESULTS", RESULTS_DIR / "results.jsonl"))

PASSED = "passed"
FAILED = "failed"
# Failing because of a service bug written up in the scenario (KNOWN_BUGS):
# reported as failing, without failing the run.
KNOWN_BUG = "known bug"


@dataclass
class ScenarioResult:
    """One row of the report, and the details under it."""

    # "5", or "2a" and "2b" for the parts of one scenario of the brief.
    number: str
    title: str
    promise: str
    meaning: str
    # The pytest node id, to run the scenario alone.
    test: str = ""
    done: str = ""
    sent: int | None = None
    acknowledged: int | None = None
    kept: int | None = None
    created: int | None = None
    duplicates: int | None = None
    recovery_s: float | None = None
    # What the recovery time is measured from and to, in this scenario.
    recovery_meaning: str = ""
    measured: dict[str, Any] = field(default_factory=dict)
    # Known service bugs that reproduced: case, this_run, write_up.
    bugs: list[dict[str, str]] = field(default_factory=list)
    outcome: str = FAILED
    failure: str = ""
    duration_s: float = 0.0

    def measure(self, **values: Any) -> None:
        """Record named figures shown under the scenario's row."""
        self.measured.update(values)

    def recovered(self, seconds: float, meaning: str) -> None:
        """Record the time to recover, and what it is measured from and to."""
        self.recovery_s = round(seconds, 2)
        self.recovery_meaning = meaning


@dataclass
class RunInfo:
    """What the run was made on; written once, first."""

    started_at: str
    machine: dict[str, str]
    postgres: str = ""
    finished_at: str = ""
    duration_s: float = 0.0


def start_file(info: RunInfo) -> None:
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps({"run": asdict(info)}) + "\n")


def append(entry: dict[str, Any]) -> None:
    with RESULTS_FILE.open("a") as out:
        out.write(json.dumps(entry, default=str) + "\n")


def add_scenario(result: ScenarioResult) -> None:
    append({"scenario": asdict(result)})


def read(path: Path = RESULTS_FILE) -> tuple[dict[str, Any], list[ScenarioResult]]:
    """The run's information (merged over its entries) and each scenario's
    latest result, in scenario order."""
    run: dict[str, Any] = {}
    scenarios: dict[str, ScenarioResult] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if "run" in entry:
            run.update(entry["run"])
        if "scenario" in entry:
            result = ScenarioResult(**entry["scenario"])
            scenarios[result.number] = result
    return run, [scenarios[n] for n in sorted(scenarios, key=_order)]


def _order(number: str) -> tuple[int, str]:
    digits = "".join(c for c in number if c.isdigit())
    return int(digits or 0), number
