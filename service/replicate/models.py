"""Replicate's objects, as far as Tuneyard reads them.

Every model keeps the fields it does not declare (`extra="allow"`), and the fields
it declares are lenient: Replicate adds fields and statuses over time, and an
answer Tuneyard does not fully understand must never become a crash.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from ..domain.names import ModelRef, parse_model


class ReplicateObject(BaseModel):
    model_config = ConfigDict(extra="allow")

    def raw(self) -> dict[str, Any]:
        """The object as Replicate sent it, unknown fields included."""
        return self.model_dump(mode="json")


class Version(ReplicateObject):
    id: str
    created_at: str | None = None
    cog_version: str | None = None
    openapi_schema: dict[str, Any] | None = None


class Model(ReplicateObject):
    owner: str
    name: str
    url: str | None = None
    description: str | None = None
    visibility: str | None = None
    latest_version: Version | None = None


class Training(ReplicateObject):
    id: str
    status: str
    model: str | None = None
    version: str | None = None
    input: dict[str, Any] | None = None
    logs: str | None = None
    error: Any = None
    output: Any = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    urls: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    source: str | None = None

    @property
    def output_version(self) -> tuple[ModelRef, str] | None:
        """The destination and version id a succeeded training produced.

        Replicate does not return a training's destination; `output.version`
        ("owner/name:version_id") is the only place it can be read.
        """
        if not isinstance(self.output, dict):
            return None
        ref = self.output.get("version")
        if not isinstance(ref, str) or ":" not in ref:
            return None
        model, _, version_id = ref.partition(":")
        try:
            return parse_model(model), version_id
        except ValueError:
            return None

    @property
    def weights_url(self) -> str | None:
        if isinstance(self.output, dict):
            weights = self.output.get("weights")
            return weights if isinstance(weights, str) else None
        return None

    @property
    def error_message(self) -> str | None:
        if self.error is None:
            return None
        return self.error if isinstance(self.error, str) else str(self.error)


T = TypeVar("T", bound=ReplicateObject)


class Page(BaseModel, Generic[T]):
    results: list[T]
    next: str | None = None
    previous: str | None = None
