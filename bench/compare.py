"""Two Tuneyard configurations beside the floor, in the same rounds.

On a shared machine one run of the same code can move by a third from the
next, so two configurations measured in separate runs cannot be told apart.
Here each round runs the floor and both configurations one after the other
(the order reversed every other round), each from a reset database with the
same signed webhooks, and reports each configuration's ratio to that round's
floor. A difference that holds in most rounds is real; one that does not is
noise.

Usage: python bench/compare.py "TUNEYARD_WEBHOOK_WRITERS=1" "TUNEYARD_WEBHOOK_WRITERS=2"
       [--rounds 5] [--seconds 10] [--connections 32]

A configuration may also name the code it runs, as `tree=PATH`: a checkout of
another commit (`git worktree add /tmp/before HEAD~1`), to compare a change
with what came before it. Without it, both run this checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from pathlib import Path

from common import ROOT, BenchDatabase, floor_directory
from ingestion import make_webhooks, reset, run_floor, run_tuneyard


def settings(spec: str) -> dict[str, str]:
    """`NAME=value NAME=value` as a mapping."""
    pairs = [word.split("=", 1) for word in spec.split()]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"not NAME=value pairs: {spec!r}")
    chosen = dict(pairs)
    tree = Path(chosen.get("tree", ROOT))
    if not (tree / "service" / "__main__.py").is_file():
        raise SystemExit(f"tree={tree}: not a Tuneyard checkout")
    return chosen


async def run_with(settings: dict[str, str], *args: object) -> dict:
    settings = dict(settings)
    tree = Path(settings.pop("tree", ROOT))
    saved = dict(os.environ)
    os.environ.update(settings)
    try:
        return await run_tuneyard(*args, tree=tree)  # type: ignore[arg-type]
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def main(a: str, b: str, rounds: int, seconds: int, connections: int) -> None:
    floor = floor_directory()
    count = 120_000
    trainings = count // 3
    configurations = {"A": settings(a), "B": settings(b)}
    ratios: dict[str, list[float]] = {"A": [], "B": []}
    async with BenchDatabase("tuneyard_bench_compare") as db:
        for number in range(1, rounds + 1):
            webhooks = make_webhooks(floor, count, trainings)
            runs: dict[str, dict] = {}
            order = ["floor", "A", "B"] if number % 2 else ["B", "A", "floor"]
            try:
                for name in order:
                    await reset(db.url, trainings)
                    args = (floor, db, webhooks, seconds, connections)
                    if name == "floor":
                        runs[name] = await run_floor(*args)
                    else:
                        runs[name] = await run_with(configurations[name], *args)
            finally:
                webhooks.unlink()
            line = [f"round {number}: floor {runs['floor']['per_second']:.0f}/s"]
            for name in ("A", "B"):
                ratio = runs[name]["per_second"] / runs["floor"]["per_second"]
                ratios[name].append(ratio)
                line.append(
                    f"{name} {runs[name]['per_second']:.0f}/s {ratio:.2f}x "
                    f"({runs[name]['server_us_per_webhook']} µs a webhook)"
                )
            print(" | ".join(line), flush=True)
    for name, spec in (("A", a), ("B", b)):
        print(f"{name} [{spec}]: median {statistics.median(ratios[name]):.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="settings of A, as NAME=value pairs")
    parser.add_argument("b", help="settings of B, as NAME=value pairs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    os.chdir(ROOT)
    asyncio.run(main(args.a, args.b, args.rounds, args.seconds, args.connections))
