"""Every knob of the simulator, fixed when it starts."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..webhooks.sign import new_webhook_secret
from .faults import FaultSettings

DEFAULT_PORT = 8090
DEFAULT_ACCOUNT = "local"
SIGNING_KEY_PREFIX = "whsec_"

# Replicate's published limits: 3,000 requests a minute for the API as a whole and
# 600 creations a minute.
DEFAULT_RATE_LIMIT = 3000
DEFAULT_CREATE_RATE_LIMIT = 600

# Account and model names are lowercase letters, digits, dashes, underscores and
# dots on Replicate; the simulator holds names to the same alphabet.
NAME_PATTERN = r"^[a-z0-9._-]{1,100}$"
_NAME = re.compile(NAME_PATTERN)


def check_webhook_secret(secret: str) -> None:
    """Raise ConfigError unless `secret` is whsec_ and non-empty base64."""
    if not secret.startswith(SIGNING_KEY_PREFIX):
        raise ConfigError("--secret: must start with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix(SIGNING_KEY_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ConfigError("--secret: the part after whsec_ must be non-empty base64")


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator behaves; the CLI flags map one to one onto these fields.

    Durations are in seconds. `faults` holds the faults in force at start; the
    admin API changes them while running.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    account: str = DEFAULT_ACCOUNT
    token: str | None = None
    secret: str = field(default_factory=new_webhook_secret, repr=False)
    training_seconds: float = 10.0
    page_size: int = 100
    rate_limit: int = DEFAULT_RATE_LIMIT
    create_rate_limit: int = DEFAULT_CREATE_RATE_LIMIT
    rate_limit_burst_seconds: float = 10.0
    seed: int | None = None
    webhook_timeout: float = 10.0
    webhook_retry_delay: float = 1.0
    webhook_retry_window: float = 60.0
    webhook_throttle: float = 0.5
    delivery_log_limit: int = 10_000
    faults: FaultSettings = field(default_factory=FaultSettings)

    def __post_init__(self) -> None:
        if not _NAME.match(self.account):
            raise ConfigError(
                "--account: use lowercase letters, digits, dashes, underscores "
                "and dots (at most 100)"
            )
        if self.token is not None and not self.token.strip():
            raise ConfigError("--token: must not be blank")
        check_webhook_secret(self.secret)
        _positive("--training-seconds", self.training_seconds)
        _positive("--page-size", self.page_size)
        _positive("--rate-limit", self.rate_limit)
        _positive("--create-rate-limit", self.create_rate_limit)
        _positive("rate_limit_burst_seconds", self.rate_limit_burst_seconds)
        _positive("--webhook-timeout", self.webhook_timeout)
        _positive("--webhook-retry-delay", self.webhook_retry_delay)
        _positive("--webhook-retry-window", self.webhook_retry_window)
        _positive("webhook_throttle", self.webhook_throttle)
        _positive("delivery_log_limit", self.delivery_log_limit)
        if not 0 <= self.port <= 65535:
            raise ConfigError("--port: must be between 0 and 65535")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name}: must be greater than 0")
