"""`python -m chaos [pytest options]`: run the chaos suite, then write its report.

Without options the whole suite runs and docs/RELIABILITY.md is rewritten. With
pytest options (`-k restart`, say) the selected scenarios run and the report goes
to chaos/.results/RELIABILITY.md, so a partial run never replaces the page.
The exit status is pytest's: an xfail (a scenario failing on a known, written-up
service bug) does not fail it; anything else that fails does.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import pytest

from .support import report, results

DOCS = results.ROOT / "docs" / "RELIABILITY.md"


def main(argv: list[str]) -> int:
    started = time.monotonic()
    code = pytest.main([str(results.ROOT / "chaos"), *argv])
    if not results.RESULTS_FILE.exists():
        return int(code)
    results.append(
        {
            "run": {
                "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "duration_s": round(time.monotonic() - started, 1),
            }
        }
    )
    target = results.RESULTS_DIR / "RELIABILITY.md" if argv else DOCS
    run, scenarios = results.read()
    report.write(target, run, scenarios)
    print(f"chaos: {len(scenarios)} scenarios reported in {target}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
