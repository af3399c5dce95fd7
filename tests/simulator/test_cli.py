"""`tuneyard simulator`: its flags, and the simulator as a real process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from service.cli import build_parser
from service.simulator.cli import config_from_args
from service.simulator.config import new_webhook_secret
from service.simulator.faults import FaultSettings

from ..support.processes import TuneyardProcess, clean_environment, free_port
from ..support.simulator import wait_until

CORE_FLAGS = [
    "--host",
    "--port",
    "--account",
    "--token",
    "--secret",
    "--training-seconds",
    "--page-size",
    "--rate-limit",
    "--create-rate-limit",
    "--seed",
    "--webhook-timeout",
    "--webhook-retry-delay",
    "--webhook-retry-window",
    "--log-level",
    "--log-format",
]
FAULT_FLAGS = ["--" + name.replace("_", "-") for name in FaultSettings.model_fields]


def test_help_lists_every_flag_and_every_fault() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "simulator", "--help"],
        capture_output=True,
        text=True,
        env=clean_environment(),
        check=False,
    )

    assert result.returncode == 0
    assert result.stdout.startswith("usage: tuneyard simulator")
    missing = [f for f in CORE_FLAGS + FAULT_FLAGS if f not in result.stdout]
    assert missing == []


def test_fault_flags_become_the_starting_faults() -> None:
    args = build_parser().parse_args(
        [
            "simulator",
            "--error-rate",
            "0.5",
            "--throttle-storm-seconds",
            "3",
            "--webhook-delay-ms",
            "250",
            "--lost-create-rate",
            "1",
        ]
    )

    config = config_from_args(args)

    assert config.faults == FaultSettings(
        error_rate=0.5,
        throttle_storm=True,
        throttle_storm_seconds=3.0,
        webhook_delay_ms=250,
        lost_create_rate=1.0,
    )


@pytest.mark.parametrize(
    "flags",
    [
        ["--error-rate", "1.5"],
        ["--webhook-drop-rate", "nan"],
        ["--latency-ms", "-5"],
        ["--training-seconds", "0"],
        ["--page-size", "0"],
    ],
)
def test_out_of_range_flag_is_refused_by_the_parser(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["simulator", *flags])

    assert exited.value.code == 2
    assert flags[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--secret", "not-a-secret"], "tuneyard: --secret: must start with whsec_"),
        (["--secret", "whsec_"], "tuneyard: --secret: the part after whsec_"),
        (["--account", "Big Co"], "tuneyard: --account: use lowercase letters"),
    ],
)
async def test_bad_setting_stops_the_start_with_one_line(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    process = TuneyardProcess(tmp_path, "simulator", *flags).start()

    code = await process.wait()

    assert code == 2
    assert process.output.strip().splitlines()[-1].startswith(message)


async def test_simulator_process_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = TuneyardProcess(
        tmp_path,
        "simulator",
        "--port",
        str(port),
        "--token",
        "r8_cli",
        TUNEYARD_PORT=str(port),
    ).start()
    try:
        await wait_until(lambda: _answers(process), timeout=30, message="simulator up")
        async with aiohttp.ClientSession(base_url=process.url) as http:
            response = await http.get(
                "/v1/account", headers={"Authorization": "Bearer r8_cli"}
            )
            account = await response.json()
    finally:
        process.signal(signal.SIGTERM)
        code = await process.wait()

    assert account["username"] == "local"
    assert code == 0
    assert f"Replicate simulator answering at {process.url}" in process.output
    assert "webhook secret: whsec_" in process.output
    names = [
        event["event"]
        for event in process.events()
        if event.get("service") == "simulator"
    ]
    assert names.index("server_started") < names.index("server_stopped")


async def test_secret_given_on_the_command_line_is_never_printed(
    tmp_path: Path,
) -> None:
    secret = new_webhook_secret()
    port = free_port()
    process = TuneyardProcess(
        tmp_path,
        "simulator",
        "--port",
        str(port),
        "--secret",
        secret,
        TUNEYARD_PORT=str(port),
    ).start()
    try:
        await wait_until(lambda: _answers(process), timeout=30, message="simulator up")
        async with aiohttp.ClientSession(base_url=process.url) as http:
            await http.get("/v1/account", headers={"Authorization": "Bearer r8_x"})
    finally:
        process.signal(signal.SIGINT)
        code = await process.wait()

    assert code == 0
    assert secret not in process.output
    assert secret.removeprefix("whsec_") not in process.output


async def _answers(process: TuneyardProcess) -> bool:
    if process.exit_code is not None:
        raise AssertionError(f"exited with {process.exit_code}:\n{process.output}")
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{process.url}/_sim/health") as response,
        ):
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False
