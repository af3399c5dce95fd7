"""Fixtures of the chaos suite: one private PostgreSQL cluster for the run, and
for each scenario a fresh database, a simulator process, Tuneyard replicas and
the row it adds to the report.

Whatever a scenario starts is stopped when it ends, passed or failed; the cluster
is stopped and deleted when the run ends.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import databases
from tests.support.processes import create_token, free_port

from .support import machine, results
from .support.cluster import PrivateCluster
from .support.results import KNOWN_BUG, PASSED, RunInfo, ScenarioResult
from .support.simulator import SimulatorProcess
from .support.tuneyard import Caller, Deployment, Records

LOGS_DIR = results.RESULTS_DIR / "logs"

SimulatorFactory = Callable[..., Awaitable[SimulatorProcess]]
DeploymentFactory = Callable[..., Deployment]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "scenario(number, title, meaning): a chaos scenario and the row it reports",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    shutil.rmtree(LOGS_DIR, ignore_errors=True)
    results.start_file(
        RunInfo(
            started_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=machine.describe(),
        )
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    """Add each phase's outcome to the scenario's result; write it at the end."""
    report = yield
    result: ScenarioResult | None = getattr(item, "chaos_result", None)
    if result is None:
        return report
    result.duration_s += report.duration
    if report.when == "call" and report.passed:
        result.outcome = PASSED
    elif report.when == "call" and hasattr(report, "wasxfail"):
        result.outcome = KNOWN_BUG
    elif report.failed:
        result.outcome = results.FAILED
        result.failure = _failure_line(report)
    if report.when == "teardown":
        result.duration_s = round(result.duration_s, 1)
        results.add_scenario(result)
    return report


def _failure_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = crash.message if crash is not None else str(report.longrepr)
    return f"{report.when}: {message.strip().splitlines()[0]}"[:500]


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> ScenarioResult:
    """The scenario's row in the report, from its `scenario` marker."""
    marker = request.node.get_closest_marker("scenario")
    assert marker is not None, "a chaos scenario needs @pytest.mark.scenario(...)"
    number, title, meaning = marker.args
    doc = request.function.__doc__ or ""
    result = ScenarioResult(
        str(number),
        title,
        promise=" ".join(doc.split()),
        meaning=meaning,
        test=request.node.nodeid,
    )
    request.node.chaos_result = result
    return result


@pytest.fixture(scope="session")
def cluster() -> Iterator[PrivateCluster]:
    """The suite's own PostgreSQL cluster, on a free port; deleted at the end."""
    cluster = PrivateCluster(free_port())
    try:
        cluster.start()
        version = asyncio.run(cluster.server_version())
        results.append({"run": {"postgres": version}})
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def database(cluster: PrivateCluster) -> AsyncIterator[str]:
    """A fresh, migrated database for the scenario, dropped after it."""
    url = await databases.create_database(cluster.url(), prefix="chaos")
    await databases.migrate(url)
    yield url
    await databases.drop_database(cluster.url(), url)


@pytest.fixture
def records(database: str) -> Records:
    return Records(database)


@pytest.fixture
def caller_token(database: str) -> str:
    """A caller's token, made as an operator makes one: with the CLI."""
    return create_token(database, "chaos")


@pytest.fixture
def workdir(request: pytest.FixtureRequest) -> Path:
    """Where the scenario's processes run and log; kept after the run."""
    path = LOGS_DIR / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def start_simulator(workdir: Path) -> AsyncIterator[SimulatorFactory]:
    started: list[SimulatorProcess] = []

    async def start(**flags: Any) -> SimulatorProcess:
        simulator = SimulatorProcess(workdir, **flags)
        started.append(simulator)
        return await simulator.start()

    yield start
    for simulator in started:
        await simulator.stop()


@pytest.fixture
async def deploy(
    workdir: Path, database: str, caller_token: str
) -> AsyncIterator[DeploymentFactory]:
    """Make a Deployment against a simulator (and by default the scenario's
    database); every replica still running is stopped after the scenario."""
    made: list[Deployment] = []

    def make(simulator: SimulatorProcess, *, database_url: str = "") -> Deployment:
        deployment = Deployment(
            workdir,
            database_url or database,
            replicate_url=simulator.url,
            replicate_token=simulator.token,
            replicate_secret=simulator.secret,
            caller_token=caller_token,
        )
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        await deployment.close()


@pytest.fixture
async def caller() -> AsyncIterator[Caller]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        yield Caller(session)
