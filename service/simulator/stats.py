"""Counters of what the simulator has answered, for the admin API."""

from __future__ import annotations

from collections import Counter
from typing import Any

LOST = "lost"
"""The status recorded for a request whose answer was never written."""


class Stats:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.creations: Counter[str] = Counter()
        self.throttled = 0
        self.storm_throttled = 0
        self.errors_injected = 0
        self.lost_creates = 0

    def record_request(self, endpoint: str, status: int | str) -> None:
        self.requests[(endpoint, str(status))] += 1

    def clear(self) -> None:
        self.requests.clear()
        self.creations.clear()
        self.throttled = self.storm_throttled = 0
        self.errors_injected = self.lost_creates = 0

    def to_json(self) -> dict[str, Any]:
        by_endpoint: dict[str, dict[str, int]] = {}
        for (endpoint, status), count in sorted(self.requests.items()):
            by_endpoint.setdefault(endpoint, {})[status] = count
        return {
            "requests": by_endpoint,
            "creations": dict(self.creations),
            "throttled": self.throttled,
            "storm_throttled": self.storm_throttled,
            "errors_injected": self.errors_injected,
            "lost_creates": self.lost_creates,
        }
