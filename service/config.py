"""Settings, read once at start from the environment and an optional `.env` file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError
from .webhooks.verify import decode_secret

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class Settings(BaseSettings):
    """Everything Tuneyard can be told; each field is named by its variable."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        populate_by_name=False,
        case_sensitive=True,
    )

    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    replicate_api_token: SecretStr | None = Field(
        default=None, alias="REPLICATE_API_TOKEN"
    )
    replicate_base_url: str = Field(
        default="https://api.replicate.com", alias="REPLICATE_BASE_URL"
    )
    replicate_webhook_secret: SecretStr | None = Field(
        default=None, alias="REPLICATE_WEBHOOK_SECRET"
    )
    public_url: str | None = Field(default=None, alias="TUNEYARD_PUBLIC_URL")
    host: str = Field(default="127.0.0.1", alias="TUNEYARD_HOST", min_length=1)
    port: int = Field(default=8080, alias="TUNEYARD_PORT", ge=1, le=65535)
    log_level: LogLevel = Field(default="info", alias="TUNEYARD_LOG_LEVEL")
    log_format: LogFormat = Field(default="auto", alias="TUNEYARD_LOG_FORMAT")
    data_dir: Path = Field(default=Path(".tuneyard"), alias="TUNEYARD_DATA_DIR")
    shutdown_timeout: float = Field(
        default=30.0, alias="TUNEYARD_SHUTDOWN_TIMEOUT", gt=0, le=3600
    )
    db_pool_size: int = Field(default=10, alias="TUNEYARD_DB_POOL_SIZE", ge=2, le=200)
    # How long one query may take. A database that stops answering (a network
    # partition drops packets rather than refusing them) would otherwise hold
    # every request until the operating system gives up on the connection.
    db_timeout: float = Field(default=5.0, alias="TUNEYARD_DB_TIMEOUT", gt=0, le=600)

    # Callers must send a token made with `tuneyard tokens create`; switch off
    # only where nothing untrusted can reach the API.
    auth_required: bool = Field(default=True, alias="TUNEYARD_AUTH_REQUIRED")
    # When set, /healthz, /readyz and /metrics need this bearer token.
    ops_token: SecretStr | None = Field(default=None, alias="TUNEYARD_OPS_TOKEN")

    # Where `tuneyard dev` runs the simulator when no Replicate token is set.
    simulator_port: int = Field(
        default=8090, alias="TUNEYARD_SIMULATOR_PORT", ge=1, le=65535
    )

    # What a destination is created with when a training does not say.
    default_visibility: Literal["public", "private"] = Field(
        default="private", alias="TUNEYARD_DEFAULT_VISIBILITY"
    )
    default_hardware: str = Field(
        default="cpu", alias="TUNEYARD_DEFAULT_HARDWARE", pattern=r"^[a-z0-9-]+$"
    )

    # Background work; every replica runs it unless told not to.
    workers: bool = Field(default=True, alias="TUNEYARD_WORKERS")
    submit_concurrency: int = Field(
        default=8, alias="TUNEYARD_SUBMIT_CONCURRENCY", ge=1, le=256
    )
    worker_poll_interval: float = Field(
        default=5.0, alias="TUNEYARD_WORKER_POLL_INTERVAL", gt=0, le=3600
    )
    reconcile_after: float = Field(
        default=120.0, alias="TUNEYARD_RECONCILE_AFTER", gt=0, le=86400
    )
    settle_window: float = Field(
        default=60.0, alias="TUNEYARD_SETTLE_WINDOW", gt=0, le=3600
    )

    # Calls to Replicate.
    replicate_timeout: float = Field(
        default=30.0, alias="TUNEYARD_REPLICATE_TIMEOUT", gt=0, le=600
    )
    replicate_rate_limit: float = Field(
        default=2400, alias="TUNEYARD_REPLICATE_RATE_LIMIT", gt=0
    )
    replicate_create_rate_limit: float = Field(
        default=540, alias="TUNEYARD_REPLICATE_CREATE_RATE_LIMIT", gt=0
    )
    # How many transactions write Replicate's webhooks at once. Each takes the
    # webhooks waiting for it as one batch, so fewer writers make larger batches.
    # One writer answered as many webhooks a second as two in bench/ingestion.py,
    # for two thirds of the database's CPU per webhook; more can help against a
    # database far enough away that one batch's round trips dominate.
    webhook_writers: int = Field(
        default=1, alias="TUNEYARD_WEBHOOK_WRITERS", ge=1, le=32
    )
    webhook_max_bytes: int = Field(
        default=16 * 1024 * 1024, alias="TUNEYARD_WEBHOOK_MAX_BYTES", ge=1024
    )

    # Callbacks to callers.
    tuneyard_webhook_secret: SecretStr | None = Field(
        default=None, alias="TUNEYARD_WEBHOOK_SECRET"
    )
    callback_hosts: str = Field(default="", alias="TUNEYARD_CALLBACK_HOSTS")
    callback_timeout: float = Field(
        default=10.0, alias="TUNEYARD_CALLBACK_TIMEOUT", gt=0, le=300
    )
    # Seconds to wait before each retry; the default spans about a day.
    callback_retry_schedule: str = Field(
        default="5,30,120,600,1800,3600,7200,14400,28800,28800",
        alias="TUNEYARD_CALLBACK_RETRY_SCHEDULE",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # The message must not quote the value: it may hold a password.
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("replicate_base_url", "public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("replicate_webhook_secret", "tuneyard_webhook_secret")
    @classmethod
    def _webhook_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        for secret in value.get_secret_value().split(","):
            if not secret.strip().startswith("whsec_"):
                raise ValueError("each comma-separated secret must start with whsec_")
            try:
                decode_secret(secret)
            except ValueError:
                raise ValueError(
                    "each comma-separated secret must be whsec_ and base64"
                ) from None
        return value

    @field_validator("callback_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",")]
        except ValueError:
            raise ValueError("must be comma-separated seconds, e.g. 5,30,120") from None
        if not 1 <= len(delays) <= 50 or any(d <= 0 or d > 7 * 86400 for d in delays):
            raise ValueError("must be 1 to 50 delays, each above 0 and at most a week")
        return value

    @field_validator("callback_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        for host in _split(value):
            if not re.fullmatch(r"(\*\.)?[a-z0-9.-]+(:\d+)?", host):
                raise ValueError(f"{host!r} is not a host name or *.domain")
        return value.lower()

    @model_validator(mode="after")
    def _writers_leave_connections(self) -> Settings:
        # Each writer holds a pooled connection for its batch; with none left
        # over, the API and the workers would queue behind the webhooks.
        if self.webhook_writers >= self.db_pool_size:
            raise ValueError(
                f"TUNEYARD_WEBHOOK_WRITERS ({self.webhook_writers}) must be below "
                f"TUNEYARD_DB_POOL_SIZE ({self.db_pool_size}), which the writers share "
                "with the API and the workers"
            )
        return self

    @property
    def webhook_secrets(self) -> list[str]:
        """The secrets that verify Replicate's webhooks."""
        return _secrets(self.replicate_webhook_secret)

    @property
    def callback_secrets(self) -> list[str]:
        """The secrets that sign Tuneyard's callbacks; all of them sign each one."""
        return _secrets(self.tuneyard_webhook_secret)

    @property
    def retry_delays(self) -> list[float]:
        return [float(part) for part in self.callback_retry_schedule.split(",")]

    @property
    def allowed_callback_hosts(self) -> list[str]:
        return _split(self.callback_hosts)

    def webhook_url(self, training_id: str) -> str:
        """Where Replicate sends a training's webhooks; the id settles lost creates."""
        assert self.public_url is not None
        return f"{self.public_url}/webhooks/replicate?training_id={training_id}"

    def require(self, *variables: str, command: str) -> None:
        """Stop the start if `command` needs a variable that is not set."""
        by_alias = {f.alias: name for name, f in type(self).model_fields.items()}
        missing = [v for v in variables if getattr(self, by_alias[v]) is None]
        if missing:
            raise ConfigError(
                "\n".join(
                    f"{v}: not set; `tuneyard {command}` needs it" for v in missing
                )
            )

    @field_validator(
        "replicate_api_token",
        "database_url",
        "replicate_webhook_secret",
        "tuneyard_webhook_secret",
        "ops_token",
        "public_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _secrets(value: SecretStr | None) -> list[str]:
    return [] if value is None else _split(value.get_secret_value())


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a validation failure into one line per variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        variable = ".".join(str(part) for part in error["loc"])
        # A check across settings names its variables in the message itself.
        lines.append(f"{variable}: {message}" if variable else message)
    return "\n".join(lines)
