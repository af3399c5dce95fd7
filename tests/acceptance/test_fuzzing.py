"""Schemathesis against the live service: no server error, answers as documented.

Every phase runs (examples, coverage, fuzzing, stateful), authenticated, bounded
by examples per operation and a time budget, with a fixed seed so a run can be
repeated exactly. All checks run but one: "schema-valid request rejected" cannot
hold for this API, since some requests that fit the document are refused on
their meaning, rightly: an opaque cursor that was not given out, a webhook whose
signature does not verify, a destination owner Replicate will not create models
for. Everything else must pass: no 5xx, status codes, content types, headers and
bodies as documented, schema-violating requests refused.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from .conftest import ServiceFactory, get_json

MAX_EXAMPLES = "12"
TIME_BUDGET_SECONDS = "150"
SEED = "20261203"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_schemathesis_finds_no_server_error_and_no_departure_from_the_document(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    service = await start_service(
        TUNEYARD_WEBHOOK_SECRET="whsec_ZnV6ei1jYWxsYmFjay1zZWNyZXQ=",
    )
    schemathesis = Path(sys.executable).parent / "schemathesis"

    process = await asyncio.create_subprocess_exec(
        str(schemathesis),
        "run",
        f"{service.url}/openapi.json",
        "--header",
        f"Authorization: {service.headers['Authorization']}",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        MAX_EXAMPLES,
        "--max-time",
        TIME_BUDGET_SECONDS,
        "--seed",
        SEED,
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    report = output.decode(errors="replace")

    assert process.returncode == 0, report[-6000:]
    document = await get_json(service, "/openapi.json")
    operations = sum(len(methods) for methods in document["paths"].values())
    # Loaded from a URL, schemathesis leaves out the document's own path.
    counts = re.search(r"Operations:\s+(\d+) selected / (\d+) total", report)
    assert counts is not None, report[-3000:]
    assert int(counts[1]) == int(counts[2]) == operations - 1
