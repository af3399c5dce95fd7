"""Tuneyard as processes on real ports: start, refuse, shut down gracefully."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import pytest

from ..support.processes import TuneyardProcess, free_port
from ..support.proxy import DatabaseProxy

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

# What `serve` needs besides a database. Nothing here reaches Replicate.
SERVE = {
    "REPLICATE_API_TOKEN": "r8_acceptance",
    "REPLICATE_BASE_URL": "http://127.0.0.1:9",
    "REPLICATE_WEBHOOK_SECRET": "whsec_YWNjZXB0YW5jZS10ZXN0cy1zZWNyZXQ=",
    "TUNEYARD_PUBLIC_URL": "http://127.0.0.1:9",
}


async def test_serve_answers_health_and_readiness(
    tmp_path: Path, clean_database: str
) -> None:
    service = TuneyardProcess(
        tmp_path, "serve", DATABASE_URL=clean_database, **SERVE
    ).start()
    try:
        await service.wait_healthy()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{service.url}/readyz") as response,
        ):
            assert response.status == 200
    finally:
        service.signal(signal.SIGTERM)
        assert await service.wait() == 0


async def test_serve_refuses_to_start_with_pending_migrations(
    tmp_path: Path, empty_database: str
) -> None:
    service = TuneyardProcess(
        tmp_path, "serve", DATABASE_URL=empty_database, **SERVE
    ).start()

    code = await service.wait()

    assert code == 1
    pending = ", ".join(p.name for p in sorted(MIGRATIONS.glob("*.sql")))
    assert service.output.strip().splitlines()[-1] == (
        f"tuneyard: migrations not applied: {pending}; run `tuneyard migrate`"
    )


async def test_sigterm_lets_a_request_in_flight_finish(
    tmp_path: Path, proxied_database_url: str, db_proxy: DatabaseProxy
) -> None:
    service = TuneyardProcess(
        tmp_path, "serve", DATABASE_URL=proxied_database_url, **SERVE
    ).start()
    await service.wait_healthy()
    async with aiohttp.ClientSession() as http:
        # /readyz queries the database; holding the proxy keeps it in flight.
        db_proxy.hold()
        in_flight = asyncio.create_task(http.get(f"{service.url}/readyz"))
        await asyncio.sleep(0.5)

        service.signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{service.url}/healthz")
        db_proxy.release()
        response = await in_flight

        assert response.status == 200
    assert await service.wait() == 0
    names = [event["event"] for event in service.events()]
    assert names.index("shutdown_started") < names.index("server_stopped")


async def test_serve_names_each_missing_setting_it_needs(tmp_path: Path) -> None:
    service = TuneyardProcess(
        tmp_path, "serve", DATABASE_URL="postgresql://x/y"
    ).start()

    assert await service.wait() == 2
    assert service.output.strip().splitlines() == [
        "tuneyard: REPLICATE_API_TOKEN: not set; `tuneyard serve` needs it",
        "tuneyard: TUNEYARD_PUBLIC_URL: not set; `tuneyard serve` needs it",
    ]


async def test_two_migrate_processes_apply_each_migration_once(
    tmp_path: Path, empty_database: str
) -> None:
    runs = [
        TuneyardProcess(tmp_path, "migrate", DATABASE_URL=empty_database)
        for _ in range(2)
    ]
    for run in runs:
        run.start()

    codes = [await run.wait() for run in runs]

    assert codes == [0, 0]
    applied = [
        event["migration"]
        for run in runs
        for event in run.events()
        if event["event"] == "migration_applied"
    ]
    files = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    assert sorted(applied) == files


@pytest.mark.slow
async def test_dev_with_nothing_configured_runs_and_stops_its_database(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    dev = TuneyardProcess(
        tmp_path,
        "dev",
        TUNEYARD_DATA_DIR=str(data_dir),
        TUNEYARD_SIMULATOR_PORT=str(free_port()),
    ).start()
    try:
        await dev.wait_healthy(timeout=60)
        token = re.search(r"export TUNEYARD_TOKEN=(\S+)", dev.output)
        assert token is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{dev.url}/readyz") as response:
                assert response.status == 200
            async with http.get(
                f"{dev.url}/v1/trainings",
                headers={"Authorization": f"Bearer {token[1]}"},
            ) as response:
                assert response.status == 200
    finally:
        dev.signal(signal.SIGINT)
        code = await dev.wait()

    assert code == 0
    assert f"Tuneyard is answering at {dev.url}" in dev.output
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
