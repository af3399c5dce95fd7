"""Webhook ingestion: Tuneyard's full webhook path beside the floor, in one run.

The floor is ../shared/bench/reference_server.py: verify the signature, insert
the event keyed by webhook-id, answer 204, one commit a request. Tuneyard does
more per webhook: verify, dedupe, move the training's status, record the version
on success, write the caller's callback event to the outbox. Both are driven by
wrk with the same signed webhooks (../shared/bench/make_webhooks.py), on the same
database, with the trainings those webhooks name seeded (and callback URLs set,
so the outbox is written; Tuneyard's workers are off, so only ingestion runs).

Each round resets the database and signs fresh webhooks, then runs the floor and
Tuneyard one after the other; the figures are the median round, and the ratio is
Tuneyard's webhooks/s over the floor's.

Usage: python bench/ingestion.py [--rounds 5] [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from common import (
    ROOT,
    BenchDatabase,
    CpuMeter,
    ServiceProcess,
    floor_directory,
    free_port,
    peak_rss_mb,
)

RESULTS = Path(__file__).parent / "results"
SECRET = "whsec_YmVuY2htYXJrLXNlY3JldC1rZXk="
TRAINER = "ostris/flux-dev-lora-trainer:" + "e4" * 32

SEED_TRAININGS = """
INSERT INTO destinations (owner, name, ensured_at) VALUES ('acme', 'faces', now())
ON CONFLICT DO NOTHING;
INSERT INTO trainings (id, caller, request_hash, destination_owner, destination_name,
                       trainer, input, callback_url, status, replicate_id,
                       create_sent_at, submitted_at)
SELECT 'trn_bench' || lpad(g::text, 21, '0'), 'bench', 'h', 'acme', 'faces', $2,
       '{}', 'http://127.0.0.1:9/callback', 'submitted',
       'r8t' || lpad(g::text, 10, '0'), now(), now()
FROM generate_series(0, $1 - 1) AS g;
"""

RESET = """
TRUNCATE training_events, notifications, notification_attempts, aliases,
         alias_history, versions, trainings CASCADE;
DROP TABLE IF EXISTS ref_events;
"""


async def reset(url: str, trainings: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(RESET)
        await conn.execute(SEED_TRAININGS.split(";")[0])
        await conn.execute(SEED_TRAININGS.split(";")[1], trainings, TRAINER)
        await conn.execute("VACUUM ANALYZE trainings")
        # Each run starts from a checkpoint, so none pays for the last one's writes.
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def make_webhooks(floor: Path, count: int, trainings: int) -> Path:
    """The floor's signed webhooks, reordered so each training gets its
    starting, processing and succeeded webhooks in turn: a run of any length
    then moves trainings, records versions and writes the outbox, the full path,
    instead of only the first wave of starting webhooks."""
    out = Path(tempfile.mkstemp(prefix="webhooks-", suffix=".tsv")[1])
    subprocess.run(
        [
            sys.executable,
            str(floor / "make_webhooks.py"),
            str(count),
            SECRET,
            str(out),
            "--trainings",
            str(trainings),
        ],
        check=True,
    )
    lines = out.read_text().splitlines(keepends=True)
    waves = [lines[i * trainings : (i + 1) * trainings] for i in range(3)]
    out.write_text(
        "".join(line for group in zip(*waves, strict=True) for line in group)
    )
    return out


def run_wrk(
    floor: Path,
    url: str,
    path: str,
    webhooks: Path,
    seconds: int,
    connections: int,
    meter: CpuMeter,
) -> dict:
    """wrk's figures, and the CPU the server and its database used per webhook."""
    meter.start()
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(floor / "webhooks.lua"),
            url,
        ],
        env={**os.environ, "WEBHOOKS_FILE": str(webhooks), "WEBHOOK_PATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = meter.stop()
    figures = parse_wrk(result.stdout)
    figures.update(cpu)
    # Microseconds of CPU per answered webhook.
    for part in ("server", "database"):
        figures[f"{part}_us_per_webhook"] = round(
            cpu[f"{part}_cpu_s"] / figures["requests"] * 1e6
        )
    return figures


def parse_wrk(output: str) -> dict:
    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        assert match, output
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    assert rate is not None, output
    assert total is not None, output
    return {
        "per_second": float(rate[1]),
        "requests": int(total[1]),
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "non_2xx": int(bad[1]) if bad else 0,
        "socket_errors": errors[1] if errors else "",
    }


async def counted(url: str, query: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def run_floor(
    floor: Path, db: BenchDatabase, webhooks: Path, seconds: int, connections: int
) -> dict:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(floor / "reference_server.py"), str(port), db.url, SECRET]
    )
    try:
        await wait_listening(port)
        figures = run_wrk(
            floor,
            f"http://127.0.0.1:{port}",
            "/webhook",
            webhooks,
            seconds,
            connections,
            CpuMeter(process.pid, db.name),
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
    figures["kept"] = await counted(db.url, "SELECT count(*) FROM ref_events")
    return figures


async def run_tuneyard(
    floor: Path,
    db: BenchDatabase,
    webhooks: Path,
    seconds: int,
    connections: int,
    tree: Path = ROOT,
) -> dict:
    async with ServiceProcess(
        db.url, tree=tree, REPLICATE_WEBHOOK_SECRET=SECRET, TUNEYARD_LOG_LEVEL="warning"
    ) as service:
        assert service.process is not None
        figures = await asyncio.to_thread(
            run_wrk,
            floor,
            service.url,
            "/webhooks/replicate",
            webhooks,
            seconds,
            connections,
            CpuMeter(service.process.pid, db.name),
        )
        figures["peak_rss_mb"] = peak_rss_mb(service.process.pid)
    figures["kept"] = await counted(db.url, "SELECT count(*) FROM training_events")
    figures["versions"] = await counted(db.url, "SELECT count(*) FROM versions")
    figures["outbox"] = await counted(db.url, "SELECT count(*) FROM notifications")
    return figures


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"nothing listens on {port}")


async def main(rounds: int, seconds: int, connections: int) -> dict:
    floor = floor_directory()
    # Enough webhooks that wrk never wraps around within a run, in three waves
    # (starting, processing, succeeded) over a third as many trainings.
    count = 120_000
    trainings = count // 3
    results: dict = {"seconds": seconds, "connections": connections, "rounds": []}
    async with BenchDatabase("tuneyard_bench_ingestion") as db:
        for number in range(1, rounds + 1):
            webhooks = make_webhooks(floor, count, trainings)
            try:
                # Who runs first alternates, so neither always meets a warm cache
                # or the other's leftovers.
                runs = {}
                order = ["floor", "tuneyard"] if number % 2 else ["tuneyard", "floor"]
                for name in order:
                    await reset(db.url, trainings)
                    run = run_floor if name == "floor" else run_tuneyard
                    runs[name] = await run(floor, db, webhooks, seconds, connections)
                floor_figures, tuneyard = runs["floor"], runs["tuneyard"]
            finally:
                webhooks.unlink()
            ratio = tuneyard["per_second"] / floor_figures["per_second"]
            results["rounds"].append(
                {"floor": floor_figures, "tuneyard": tuneyard, "ratio": round(ratio, 2)}
            )
            print(
                f"round {number}: floor {floor_figures['per_second']:.0f}/s "
                f"p99 {floor_figures['p99_ms']:.1f} ms | tuneyard "
                f"{tuneyard['per_second']:.0f}/s p99 {tuneyard['p99_ms']:.1f} ms | "
                f"{ratio:.2f}x",
                flush=True,
            )
    median = statistics.median_low(r["ratio"] for r in results["rounds"])
    results["median"] = next(r for r in results["rounds"] if r["ratio"] == median)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    os.chdir(ROOT)
    outcome = asyncio.run(main(args.rounds, args.seconds, args.connections))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingestion.json").write_text(json.dumps(outcome, indent=2) + "\n")
    best = outcome["median"]
    print(f"\ningestion (median round): {best['ratio']}x the floor")
