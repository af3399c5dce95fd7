"""The JSON Replicate answers for each resource, built from the simulator's state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from yarl import URL

from .ids import timestamp
from .pagination import Cursor, Page
from .state import HARDWARE, Model, Training, Version

T = TypeVar("T")

# Replicate's website; the simulator serves no pages, but its objects link there
# as Replicate's do.
WEB_BASE = "https://replicate.com"


def account_json(account: str) -> dict[str, Any]:
    return {
        "type": "organization",
        "username": account,
        "name": account,
        "github_url": None,
    }


def hardware_json() -> list[dict[str, str]]:
    return [{"sku": sku, "name": name} for sku, name in HARDWARE.items()]


def version_json(version: Version) -> dict[str, Any]:
    return {
        "id": version.id,
        "created_at": timestamp(version.created_at),
        "cog_version": version.cog_version,
        "openapi_schema": version.openapi_schema,
    }


def model_json(model: Model) -> dict[str, Any]:
    latest = model.latest_version
    return {
        "url": f"{WEB_BASE}/{model.full_name}",
        "owner": model.owner,
        "name": model.name,
        "description": model.description,
        "visibility": model.visibility,
        "github_url": model.github_url,
        "paper_url": model.paper_url,
        "license_url": model.license_url,
        "run_count": model.run_count,
        "cover_image_url": model.cover_image_url,
        "default_example": None,
        "latest_version": None if latest is None else version_json(latest),
        "is_official": False,
    }


def training_json(training: Training) -> dict[str, Any]:
    """A training as `GET /v1/trainings/{id}` answers it: no destination."""
    get_url = f"{training.api_base}/v1/trainings/{training.id}"
    return {
        "id": training.id,
        "model": training.trainer.full_name,
        "version": training.trainer.version_id,
        "input": training.input,
        "logs": training.logs,
        "error": training.error,
        "status": training.status,
        "created_at": timestamp(training.created_at),
        "started_at": timestamp(training.started_at),
        "completed_at": timestamp(training.completed_at),
        "urls": {
            "get": get_url,
            "cancel": f"{get_url}/cancel",
            "web": f"{WEB_BASE}/p/{training.id}",
        },
        "metrics": dict(training.metrics),
        "output": None if training.output is None else dict(training.output),
        "source": training.source,
    }


def admin_training_json(training: Training) -> dict[str, Any]:
    """A training with what Replicate keeps to itself, for the admin API."""
    return {
        **training_json(training),
        "destination": training.destination,
        "effective_input": training.effective_input,
        "webhook": training.webhook,
        "webhook_events_filter": training.webhook_events_filter,
        "answer_lost": training.answer_lost,
        "fate": {
            "fails": training.fate.fails,
            "hangs": training.fate.hangs,
            "reorders_webhooks": training.fate.reorders_webhooks,
        },
    }


def page_json(
    page: Page[T], render: Callable[[T], dict[str, Any]], url: URL
) -> dict[str, Any]:
    """A list answer; `next` and `previous` are `url` with a cursor."""

    def link(cursor: Cursor | None) -> str | None:
        return None if cursor is None else str(url.with_query(cursor=cursor.encode()))

    return {
        "next": link(page.next),
        "previous": link(page.previous),
        "results": [render(item) for item in page.results],
    }
