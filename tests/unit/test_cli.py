"""The command line: help for every command, and a bad setting stops the start."""

from __future__ import annotations

import pytest

from service.cli import build_parser, main

COMMANDS = ["serve", "migrate", "dev"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--help"])

    assert exited.value.code == 0
    assert f"usage: tuneyard {command}" in capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])

    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)


def test_bad_setting_stops_the_start_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TUNEYARD_PORT", "eighty")

    with pytest.raises(SystemExit) as exited:
        main(["serve"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "tuneyard: TUNEYARD_PORT: Input should be a valid integer, unable to parse "
        "string as an integer"
    ]
