"""Settings, read once at start from the environment and an optional `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

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

    @field_validator("replicate_webhook_secret")
    @classmethod
    def _webhook_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        for secret in value.get_secret_value().split(","):
            if not secret.strip().startswith("whsec_"):
                raise ValueError("each comma-separated secret must start with whsec_")
        return value

    @field_validator("replicate_api_token", "database_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a validation failure into one line per variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        variable = ".".join(str(part) for part in error["loc"]) or "settings"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{variable}: {message}")
    return "\n".join(lines)
