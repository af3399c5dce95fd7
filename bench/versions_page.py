"""A page of 50 versions at 1,000 and at 1,000,000 versions in one destination.

Keyset pagination should make both cost the same: the page is read from the
versions_newest_first index wherever the cursor points. Measured through the
HTTP API, for the first page and for a page deep in the collection.

Usage: python bench/versions_page.py [--large 1000000] [--requests 300]
Prints a table and writes the figures as JSON to bench/results/versions.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp
import asyncpg
from common import BenchDatabase, ServiceProcess, percentile

RESULTS = Path(__file__).parent / "results"

SEED = """
INSERT INTO versions (owner, name, version_id, created_at, source)
SELECT 'acme', $1, encode(sha256(($1 || g)::bytea), 'hex'),
       timestamptz '2020-01-01' + g * interval '1 second', 'sync'
FROM generate_series(1, $2) AS g
"""


async def seed(url: str, name: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO destinations (owner, name) VALUES ('acme', $1)", name
        )
        await conn.execute(SEED, name, count)
        # Settled before timing starts, rather than by autovacuum during it.
        await conn.execute("VACUUM ANALYZE versions")
    finally:
        await conn.close()


async def deep_cursor(http: aiohttp.ClientSession, first_page: str, hops: int) -> str:
    """Follow `next` `hops` times, to measure a page far from the start."""
    url = first_page
    for _ in range(hops):
        async with http.get(url) as response:
            assert response.status == 200, await response.text()
            url = (await response.json())["next"]
    return url


async def time_pages(
    http: aiohttp.ClientSession, urls: dict[str, str], requests: int
) -> dict[str, list[float]]:
    """Time every page `requests` times, taking them in turn, so that whatever
    else the machine does meanwhile falls on all of them alike."""
    for _ in range(20):  # warm the connection, the prepared statements, the cache
        for url in urls.values():
            async with http.get(url) as response:
                await response.read()
    timings: dict[str, list[float]] = {case: [] for case in urls}
    for _ in range(requests):
        for case, url in urls.items():
            started = time.perf_counter()
            async with http.get(url) as response:
                body = await response.read()
            timings[case].append((time.perf_counter() - started) * 1000)
            assert response.status == 200, body[:200]
    return timings


async def plan(url: str, name: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "EXPLAIN SELECT * FROM versions WHERE owner = 'acme' AND name = $1 "
            "AND deleted_at IS NULL AND (created_at, version_id) < (now(), '') "
            "ORDER BY created_at DESC, version_id DESC LIMIT 51",
            name,
        )
    finally:
        await conn.close()
    return "\n".join(row[0] for row in rows)


async def main(large: int, requests: int) -> dict:
    sizes = {"small": 1000, "large": large}
    results: dict = {"requests": requests, "cases": {}}
    async with BenchDatabase("tuneyard_bench_versions") as db:
        for name, count in sizes.items():
            started = time.perf_counter()
            await seed(db.url, name, count)
            print(
                f"seeded acme/{name} with {count:,} versions in "
                f"{time.perf_counter() - started:.1f}s"
            )
        results["plan_large"] = await plan(db.url, "large")
        headers = {"Authorization": f"Bearer {db.create_token('bench')}"}
        async with (
            ServiceProcess(db.url) as service,
            aiohttp.ClientSession(headers=headers) as http,
        ):
            urls = {}
            for name in sizes:
                first = f"{service.url}/v1/destinations/acme/{name}/versions?limit=50"
                # Halfway into the small one; ten pages in for the large one,
                # and the plan shows the depth does not matter.
                urls[f"{name}/first"] = first
                urls[f"{name}/deep"] = await deep_cursor(http, first, hops=10)
            timings = await time_pages(http, urls, requests)
            for case, measured in timings.items():
                results["cases"][case] = {
                    "versions": sizes[case.split("/")[0]],
                    "p50_ms": round(percentile(measured, 0.5), 2),
                    "p99_ms": round(percentile(measured, 0.99), 2),
                }
    cases = results["cases"]
    results["ratio_p50"] = round(
        cases["large/first"]["p50_ms"] / cases["small/first"]["p50_ms"], 2
    )
    results["ratio_p50_deep"] = round(
        cases["large/deep"]["p50_ms"] / cases["small/deep"]["p50_ms"], 2
    )
    return results


def report(results: dict) -> None:
    print(f"\n{'case':<14}{'versions':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for case, figures in results["cases"].items():
        print(
            f"{case:<14}{figures['versions']:>12,}"
            f"{figures['p50_ms']:>10.2f}{figures['p99_ms']:>10.2f}"
        )
    print(f"\nlarge / small, p50, first page: {results['ratio_p50']}x")
    print(f"large / small, p50, deep page:  {results['ratio_p50_deep']}x")
    print("\nplan for the large destination:\n" + results["plan_large"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    results = asyncio.run(main(args.large, args.requests))
    report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "versions.json").write_text(json.dumps(results, indent=2) + "\n")
