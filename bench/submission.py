"""Submission: 1,000 queued trainings reach Replicate (the simulator) at its
creation limit, with few 429s and none created twice.

The simulator allows 600 creations a minute (Replicate's limit) with a ten-second
burst. Tuneyard's client-side limit is set a little below it
(TUNEYARD_REPLICATE_CREATE_RATE_LIMIT=570), as it would be in production. The
trainings are queued before the service starts, so the submitters find them all
at once. The rate is measured on the simulator's own record of when each
training was created, over the part of the run past the simulator's initial
burst, so the figure is the sustained rate.

Usage: python bench/submission.py [--trainings 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import aiohttp
import asyncpg
from common import ROOT, BenchDatabase, ServiceProcess, free_port

RESULTS = Path(__file__).parent / "results"
SECRET = "whsec_YmVuY2gtc3VibWlzc2lvbi1zZWNyZXQ="
CREATE_LIMIT = 600
CLIENT_LIMIT = 570
TRAINER = "ostris/flux-dev-lora-trainer:" + (
    "e68139c4d943ea56373d72b9108b5d36462756c30429d611e97b197d5dae9910"
)

QUEUE = """
INSERT INTO destinations (owner, name) VALUES ('local', 'bench');
INSERT INTO trainings (id, caller, request_hash, destination_owner, destination_name,
                       trainer, input)
SELECT 'trn_bench' || lpad(g::text, 21, '0'), 'bench', 'h', 'local', 'bench', $2,
       jsonb_build_object('input_images', 'https://example.com/set-' || g || '.zip')
FROM generate_series(1, $1) AS g;
"""


async def queue(url: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        first, second = QUEUE.strip().split(";\n", 1)
        await conn.execute(first)
        await conn.execute(second.rstrip(";"), count, TRAINER)
    finally:
        await conn.close()


async def admin(url: str, path: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        return await response.json()


async def main(count: int) -> dict:
    port = free_port()
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service",
            "simulator",
            "--port",
            str(port),
            "--secret",
            SECRET,
            "--training-seconds",
            "1",
            "--create-rate-limit",
            str(CREATE_LIMIT),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    sim = f"http://127.0.0.1:{port}"
    try:
        async with BenchDatabase("tuneyard_bench_submission") as db:
            await queue(db.url, count)
            async with ServiceProcess(
                db.url,
                REPLICATE_API_TOKEN="r8_bench",
                REPLICATE_BASE_URL=sim,
                REPLICATE_WEBHOOK_SECRET=SECRET,
                TUNEYARD_WORKERS="true",
                TUNEYARD_REPLICATE_CREATE_RATE_LIMIT=str(CLIENT_LIMIT),
                TUNEYARD_SUBMIT_CONCURRENCY="16",
            ) as service:
                assert service.url
                done = 0
                for _ in range(600):
                    made = await admin(sim, "/_sim/trainings")
                    done = len(made["results"])
                    if done >= count:
                        break
                    await asyncio.sleep(1)
                stats = await admin(sim, "/_sim/stats")
            conn = await asyncpg.connect(db.url)
            try:
                ids = await conn.fetch("SELECT replicate_id FROM trainings")
            finally:
                await conn.close()
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.wait(timeout=30)

    created = sorted(
        datetime.fromisoformat(t["created_at"].replace("Z", "+00:00"))
        for t in made["results"]
    )
    # Past the simulator's burst allowance (ten seconds' worth), the pace is the
    # limit's; the burst would flatter the average.
    burst = CREATE_LIMIT // 6
    steady = created[burst:]
    seconds = (steady[-1] - steady[0]).total_seconds()
    rate_per_minute = (len(steady) - 1) / seconds * 60
    create_requests = sum(
        n
        for endpoint, statuses in stats["requests"].items()
        if endpoint.startswith("POST") and endpoint.endswith("/trainings")
        for n in statuses.values()
    )
    throttled = sum(
        statuses.get("429", 0)
        for endpoint, statuses in stats["requests"].items()
        if endpoint.startswith("POST") and endpoint.endswith("/trainings")
    )
    replicate_ids = [r["replicate_id"] for r in ids]
    return {
        "trainings": count,
        "created_on_replicate": len(made["results"]),
        "distinct_replicate_ids": len({i for i in replicate_ids if i}),
        "create_limit_per_minute": CREATE_LIMIT,
        "client_limit_per_minute": CLIENT_LIMIT,
        "sustained_per_minute": round(rate_per_minute, 1),
        "share_of_limit": round(rate_per_minute / CREATE_LIMIT, 3),
        "create_requests": create_requests,
        "answered_429": throttled,
        "share_429": round(throttled / create_requests, 4) if create_requests else 0,
        "seconds": round((created[-1] - created[0]).total_seconds(), 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainings", type=int, default=1000)
    args = parser.parse_args()
    os.chdir(ROOT)
    outcome = asyncio.run(main(args.trainings))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "submission.json").write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps(outcome, indent=2))
