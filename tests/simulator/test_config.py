"""The simulator's configuration refuses values it cannot run with."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import ConfigError
from service.simulator.config import SimulatorConfig, new_webhook_secret


@pytest.mark.parametrize(
    ("setting", "flag"),
    [
        ({"account": "Acme"}, "--account"),
        ({"account": ""}, "--account"),
        ({"token": "  "}, "--token"),
        ({"secret": "whsec_!!!"}, "--secret"),
        ({"training_seconds": 0}, "--training-seconds"),
        ({"page_size": 0}, "--page-size"),
        ({"rate_limit": -1}, "--rate-limit"),
        ({"create_rate_limit": 0}, "--create-rate-limit"),
        ({"webhook_retry_window": 0}, "--webhook-retry-window"),
        ({"port": 70000}, "--port"),
    ],
)
def test_config_with_a_bad_value_names_the_flag(
    setting: dict[str, Any], flag: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{flag}:"):
        SimulatorConfig(**setting)


def test_config_generates_a_fresh_secret_each_time() -> None:
    first, second = SimulatorConfig(), SimulatorConfig()

    assert first.secret != second.secret
    assert first.secret.startswith("whsec_")
    assert new_webhook_secret() != new_webhook_secret()


def test_config_repr_never_shows_the_secret() -> None:
    config = SimulatorConfig()

    assert config.secret not in repr(config)
    assert config.secret.removeprefix("whsec_") not in repr(config)
