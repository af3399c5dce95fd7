"""The simulator's memory: models, their versions, and trainings.

State lives in this process only: it is lost on exit and by `POST /_sim/reset`,
and grows until then (each training keeps its input and logs).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from . import ids
from .errors import (
    Conflict,
    DestinationNotFound,
    Forbidden,
    InvalidVersion,
    NotFound,
)
from .faults import TrainingFate
from .pagination import Cursor, Page, Timeline
from .trainers import COG_VERSION, TRAINERS, Trainer

HARDWARE: Mapping[str, str] = {
    "cpu": "CPU",
    "gpu-t4": "Nvidia T4 GPU",
    "gpu-a40-small": "Nvidia A40 GPU",
    "gpu-a40-large": "Nvidia A40 (Large) GPU",
    "gpu-a100-large": "Nvidia A100 (80GB) GPU",
    "gpu-h100": "Nvidia H100 GPU",
}
MAX_MODELS_PER_ACCOUNT = 1000
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})

Visibility = Literal["public", "private"]
Source = Literal["api", "web"]


@dataclass
class Version:
    id: str
    key: int
    created_at: datetime
    cog_version: str
    openapi_schema: dict[str, Any]


@dataclass
class Model:
    owner: str
    name: str
    key: int
    visibility: Visibility
    hardware: str
    description: str | None = None
    github_url: str | None = None
    paper_url: str | None = None
    license_url: str | None = None
    cover_image_url: str | None = None
    readme: str | None = None
    weights_url: str | None = None
    run_count: int = 0
    trainer: Trainer | None = None
    versions: Timeline[Version] = field(default_factory=Timeline)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def latest_version(self) -> Version | None:
        return self.versions.newest()

    def version(self, version_id: str) -> Version | None:
        return next(
            (v for v in self.versions.newest_first() if v.id == version_id), None
        )


@dataclass
class Training:
    """A training and everything the simulator knows of it, destination included."""

    id: str
    key: int
    trainer: Trainer
    destination: str
    input: dict[str, Any]
    effective_input: dict[str, Any]
    source: Source
    api_base: str
    created_at: datetime
    fate: TrainingFate
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None
    status: str = "starting"
    logs: str = ""
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output: dict[str, str] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    answer_lost: bool = False

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def log(self, line: str) -> None:
        self.logs += line + "\n"


class Store:
    """Models, versions and trainings, and the rules Replicate enforces on them."""

    def __init__(self, account: str, trainers: Sequence[Trainer] = TRAINERS) -> None:
        self.account = account
        self._trainer_definitions = tuple(trainers)
        self._keys = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget everything but the trainers, which start afresh."""
        self._models: dict[str, Model] = {}
        self._public_models: Timeline[Model] = Timeline()
        self._trainings: dict[str, Training] = {}
        self._training_timeline: Timeline[Training] = Timeline()
        self._training_bases: set[str] = set()
        for trainer in self._trainer_definitions:
            self._register_trainer(trainer)

    # Models

    def create_model(
        self, owner: str, name: str, visibility: Visibility, hardware: str, **extra: Any
    ) -> Model:
        if owner != self.account:
            raise Forbidden(f"You do not have permission to create models for {owner}.")
        if f"{owner}/{name}" in self._models:
            raise Conflict("A model with that name and owner already exists.")
        if (
            sum(m.owner == owner for m in self._models.values())
            >= MAX_MODELS_PER_ACCOUNT
        ):
            limit = f"{MAX_MODELS_PER_ACCOUNT:,}"
            raise Forbidden(f"This account has reached its limit of {limit} models.")
        model = Model(owner, name, next(self._keys), visibility, hardware, **extra)
        self._add_model(model)
        return model

    def model(self, owner: str, name: str) -> Model:
        model = self._models.get(f"{owner}/{name}")
        if model is None:
            raise NotFound()
        return model

    def public_models(self, cursor: Cursor | None, size: int) -> Page[Model]:
        """Replicate lists public models only; private ones are read by name."""
        return self._public_models.page(cursor, size)

    def update_model(self, model: Model, changes: Mapping[str, Any]) -> Model:
        if model.owner != self.account:
            raise Forbidden("You can only update models your account owns.")
        for name, value in changes.items():
            setattr(model, name, value)
        return model

    def delete_model(self, model: Model) -> None:
        if model.owner != self.account:
            raise Forbidden("You can only delete models your account owns.")
        # Replicate deletes only private models without versions, so that nobody
        # loses a model they run.
        if model.visibility != "private":
            raise Conflict("Only private models can be deleted; this one is public.")
        if len(model.versions):
            raise Conflict("This model has versions; delete them before the model.")
        del self._models[model.full_name]

    # Versions

    def add_version(
        self,
        model: Model,
        openapi_schema: dict[str, Any],
        cog_version: str = COG_VERSION,
    ) -> Version:
        version = Version(
            id=ids.version_id(),
            key=next(self._keys),
            created_at=ids.utcnow(),
            cog_version=cog_version,
            openapi_schema=openapi_schema,
        )
        model.versions.add(version.key, version)
        return version

    def version(self, model: Model, version_id: str) -> Version:
        version = model.version(version_id)
        if version is None:
            raise NotFound()
        return version

    def delete_version(self, model: Model, version: Version) -> None:
        if model.owner != self.account:
            raise Conflict(
                f"{model.full_name} is owned by another account; only its owner can "
                "delete its versions."
            )
        if version.id in self._training_bases:
            raise Conflict(
                "This version is the base of a training (a trainer) and cannot be "
                "deleted."
            )
        if model.visibility == "public":
            raise Conflict("Versions of public models cannot be deleted.")
        model.versions.remove(version.key)

    # Trainings

    def trainer(self, owner: str, name: str, version_id: str) -> Trainer:
        """The trainer behind a trainer model and version, if that is one."""
        model = self._models.get(f"{owner}/{name}")
        if model is None or model.trainer is None:
            raise InvalidVersion()
        # Only the trainer's own version trains; others pushed to the same model
        # are plain versions.
        if version_id != model.trainer.version_id:
            raise InvalidVersion()
        return model.trainer

    def destination(self, full_name: str) -> Model:
        """A model this account may train into."""
        model = self._models.get(full_name)
        if model is None or model.owner != self.account:
            raise DestinationNotFound()
        return model

    def next_key(self) -> int:
        return next(self._keys)

    def add_training(self, training: Training) -> None:
        self._trainings[training.id] = training
        self._training_timeline.add(training.key, training)
        self._training_bases.add(training.trainer.version_id)
        self._models[training.trainer.full_name].run_count += 1

    def training(self, training_id: str) -> Training:
        training = self._trainings.get(training_id)
        if training is None:
            raise NotFound()
        return training

    def trainings(self, cursor: Cursor | None, size: int) -> Page[Training]:
        return self._training_timeline.page(cursor, size)

    def every_training(self) -> Iterator[Training]:
        """Every training ever made (until reset), newest first."""
        return self._training_timeline.newest_first()

    def _register_trainer(self, trainer: Trainer) -> None:
        model = Model(
            trainer.owner,
            trainer.name,
            next(self._keys),
            "public",
            trainer.hardware,
            description=trainer.description,
            github_url=trainer.github_url,
            paper_url=trainer.paper_url,
            license_url=trainer.license_url,
            trainer=trainer,
        )
        version = Version(
            trainer.version_id,
            next(self._keys),
            trainer.version_created_at,
            COG_VERSION,
            trainer.openapi_schema(),
        )
        model.versions.add(version.key, version)
        self._add_model(model)
        self._training_bases.add(trainer.version_id)

    def _add_model(self, model: Model) -> None:
        # Visibility cannot change after creation (PATCH does not take it), so a
        # model is listed, or not, for its whole life.
        self._models[model.full_name] = model
        if model.visibility == "public":
            self._public_models.add(model.key, model)
