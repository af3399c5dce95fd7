"""Faults to inject: their settings, and the seeded dice that decide each one.

Every share is a probability from 0 to 1, rolled once per occasion (a request, a
training, a webhook message) on one `random.Random(seed)`; a share of 1 always
happens and 0 never does, so tests that use only those are deterministic.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Share = Annotated[float, Field(ge=0, le=1)]
Milliseconds = Annotated[int, Field(ge=0, le=600_000)]

# The statuses the server-error fault picks among: what a failing API, a broken
# proxy and an overloaded one answer.
INJECTED_STATUSES = (500, 502, 503)
_STORM_FIELDS = frozenset({"throttle_storm", "throttle_storm_seconds"})


class FaultSettings(BaseModel):
    """The faults in force. Every field is also a CLI flag and an admin field."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    latency_ms: Milliseconds = 0
    latency_jitter_ms: Milliseconds = 0
    error_rate: Share = 0.0
    throttle_storm: bool = False
    throttle_storm_seconds: Annotated[float, Field(gt=0, le=86_400)] | None = None
    webhook_drop_rate: Share = 0.0
    webhook_duplicate_rate: Share = 0.0
    webhook_delay_ms: Milliseconds = 0
    webhook_reorder_rate: Share = 0.0
    training_failure_rate: Share = 0.0
    training_hang_rate: Share = 0.0
    lost_create_rate: Share = 0.0


@dataclass(frozen=True)
class TrainingFate:
    """What the faults decided for one training when it was created."""

    fails: bool = False
    hangs: bool = False
    reorders_webhooks: bool = False


class Faults:
    """The live fault settings and the decisions made from them."""

    def __init__(
        self,
        settings: FaultSettings,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        self._settings = settings
        self._storm_until: float | None = None
        self._start_storm(settings)

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update; raises pydantic's ValidationError when invalid."""
        merged = {**self._settings.model_dump(), **changes}
        # Naming one storm field alone means the other follows it: seconds start
        # a timed storm, and a bare `throttle_storm: true` an endless one.
        if "throttle_storm_seconds" in changes and "throttle_storm" not in changes:
            merged["throttle_storm"] = changes["throttle_storm_seconds"] is not None
        if "throttle_storm" in changes and "throttle_storm_seconds" not in changes:
            merged["throttle_storm_seconds"] = None
        settings = FaultSettings.model_validate(merged)
        self._settings = settings
        if _STORM_FIELDS & changes.keys():
            self._start_storm(settings)

    def describe(self) -> dict[str, Any]:
        """The settings as they stand now, with the storm's live state."""
        described = self._settings.model_dump(exclude=set(_STORM_FIELDS))
        remaining = self.storm_remaining()
        described["throttle_storm"] = remaining is not None
        described["throttle_storm_remaining_seconds"] = (
            None if remaining is None or math.isinf(remaining) else remaining
        )
        return described

    def storm_remaining(self) -> float | None:
        """Seconds the 429 storm still lasts (inf: until switched off), or None."""
        if self._storm_until is None:
            return None
        remaining = self._storm_until - self._clock()
        if remaining <= 0:
            self._storm_until = None
            return None
        return remaining

    def latency(self) -> float:
        """Seconds to hold the next API answer."""
        jitter = self._rng.uniform(0, self._settings.latency_jitter_ms)
        return (self._settings.latency_ms + jitter) / 1000

    def injected_status(self) -> int | None:
        """A 5xx to answer the next API request with, or None."""
        if not self._roll(self._settings.error_rate):
            return None
        return self._rng.choice(INJECTED_STATUSES)

    def loses_create(self) -> bool:
        return self._roll(self._settings.lost_create_rate)

    def training_fate(self) -> TrainingFate:
        hangs = self._roll(self._settings.training_hang_rate)
        fails = self._roll(self._settings.training_failure_rate) and not hangs
        reorders = self._roll(self._settings.webhook_reorder_rate)
        return TrainingFate(fails=fails, hangs=hangs, reorders_webhooks=reorders)

    def drops_webhook(self) -> bool:
        return self._roll(self._settings.webhook_drop_rate)

    def duplicates_webhook(self) -> bool:
        return self._roll(self._settings.webhook_duplicate_rate)

    def webhook_delay(self) -> float:
        return self._settings.webhook_delay_ms / 1000

    def _roll(self, share: float) -> bool:
        # Always draw, so one seed gives one sequence whatever the shares are.
        return self._rng.random() < share

    def _start_storm(self, settings: FaultSettings) -> None:
        if not settings.throttle_storm:
            self._storm_until = None
        elif settings.throttle_storm_seconds is None:
            self._storm_until = math.inf
        else:
            self._storm_until = self._clock() + settings.throttle_storm_seconds
