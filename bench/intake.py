"""Intake: POST /v1/trainings accepted per second, and p99, with 32 callers.

Each accepted training is committed (with its destination row and the NOTIFY
that wakes submitters) before its 202. The workers are off, so only intake is
measured. The floor's webhook rate from the same run is printed beside it: a
reference for one commit a request on this machine at this moment.

Usage: python bench/intake.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
from pathlib import Path

from common import BenchDatabase, ServiceProcess, floor_directory
from ingestion import counted, make_webhooks, parse_wrk, reset, run_floor

RESULTS = Path(__file__).parent / "results"
SCRIPT = Path(__file__).parent / "trainings.lua"


async def main(seconds: int, connections: int) -> dict:
    floor = floor_directory()
    async with BenchDatabase("tuneyard_bench_intake") as db:
        await reset(db.url, 1)
        token = db.create_token("bench")
        async with ServiceProcess(db.url) as service:
            result = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "--latency",
                    "-s",
                    str(SCRIPT),
                    service.url,
                ],
                env={**os.environ, "TUNEYARD_TOKEN": token},
                capture_output=True,
                text=True,
                check=True,
            )
            intake = parse_wrk(result.stdout)
        intake["kept"] = await counted(db.url, "SELECT count(*) FROM trainings")

        webhooks = make_webhooks(floor, 60_000, 20_000)
        try:
            await reset(db.url, 20_000)
            floor_figures = await run_floor(floor, db, webhooks, seconds, connections)
        finally:
            webhooks.unlink()
    return {
        "seconds": seconds,
        "connections": connections,
        "intake": intake,
        "floor": floor_figures,
        "ratio": round(intake["per_second"] / floor_figures["per_second"], 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    outcome = asyncio.run(main(args.seconds, args.connections))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "intake.json").write_text(json.dumps(outcome, indent=2) + "\n")
    i, f = outcome["intake"], outcome["floor"]
    print(
        f"intake {i['per_second']:.0f}/s p50 {i['p50_ms']:.1f} ms "
        f"p99 {i['p99_ms']:.1f} ms "
        f"({i['non_2xx']} not accepted, {i['kept']} kept) | floor "
        f"{f['per_second']:.0f}/s | {outcome['ratio']}x"
    )
