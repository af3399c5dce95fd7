"""Settings: defaults, sources, and one clear line per bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings, load_settings
from service.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(Settings.model_fields):
        alias = Settings.model_fields[name].alias
        assert alias is not None
        monkeypatch.delenv(alias, raising=False)


def test_settings_without_environment_use_documented_defaults() -> None:
    settings = load_settings(_env_file=None)

    assert settings.database_url is None
    assert settings.replicate_base_url == "https://api.replicate.com"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_dir == Path(".tuneyard")
    assert (settings.log_level, settings.log_format) == ("info", "auto")


def test_settings_are_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEYARD_PORT", "9001")
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9999/")

    settings = load_settings(_env_file=None)

    assert settings.port == 9001
    assert settings.replicate_base_url == "http://127.0.0.1:9999"


def test_settings_are_read_from_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TUNEYARD_HOST=0.0.0.0\nUNRELATED_VARIABLE=1\n")

    settings = load_settings(_env_file=env_file)

    assert settings.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TUNEYARD_PORT", "http", "TUNEYARD_PORT: Input should be a valid integer"),
        ("TUNEYARD_PORT", "0", "TUNEYARD_PORT: Input should be greater than or"),
        ("TUNEYARD_PORT", "70000", "TUNEYARD_PORT: Input should be less than or"),
        ("DATABASE_URL", "mysql://db/x", "DATABASE_URL: must be a postgresql:// URL"),
        ("REPLICATE_BASE_URL", "ftp://x", "REPLICATE_BASE_URL: must be an http://"),
        ("TUNEYARD_PUBLIC_URL", "example.com", "TUNEYARD_PUBLIC_URL: must be an"),
        (
            "REPLICATE_WEBHOOK_SECRET",
            "whsec_abc,plain",
            "REPLICATE_WEBHOOK_SECRET: each comma-separated secret must start with",
        ),
        ("TUNEYARD_LOG_LEVEL", "loud", "TUNEYARD_LOG_LEVEL: Input should be 'debug'"),
        ("TUNEYARD_LOG_FORMAT", "xml", "TUNEYARD_LOG_FORMAT: Input should be 'auto'"),
        ("TUNEYARD_SHUTDOWN_TIMEOUT", "-1", "TUNEYARD_SHUTDOWN_TIMEOUT: Input should"),
        ("TUNEYARD_DB_POOL_SIZE", "1", "TUNEYARD_DB_POOL_SIZE: Input should be"),
        (
            "TUNEYARD_WEBHOOK_WRITERS",
            "10",
            "TUNEYARD_WEBHOOK_WRITERS (10) must be below TUNEYARD_DB_POOL_SIZE (10)",
        ),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)

    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_bad_database_url_message_does_not_show_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://app:hunter2@db/tuneyard")

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)

    assert "hunter2" not in str(raised.value)


def test_secrets_are_hidden_when_settings_are_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_supersecret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db/tuneyard")

    settings = load_settings(_env_file=None)

    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "r8_supersecret" not in shown
    assert "hunter2" not in shown
    assert settings.replicate_api_token is not None
    assert settings.replicate_api_token.get_secret_value() == "r8_supersecret"


def test_several_bad_settings_get_one_line_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TUNEYARD_PORT", "x")
    monkeypatch.setenv("TUNEYARD_LOG_LEVEL", "x")

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)

    lines = str(raised.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "TUNEYARD_PORT",
        "TUNEYARD_LOG_LEVEL",
    ]
