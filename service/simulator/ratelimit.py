"""Rate limits like Replicate's: token buckets per account.

Each account has two buckets: one that every API request draws from, and one that
creations (models and trainings) also draw from. A bucket refills at its limit /
60 tokens a second and holds `burst_seconds` of refill (at least one token), so a
short burst passes and a sustained rate above the limit is turned away.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

REMAINING_HEADER = "ratelimit-remaining"
RESET_HEADER = "ratelimit-reset"


@dataclass(frozen=True)
class Allowance:
    """One bucket's answer to one request."""

    allowed: bool
    remaining: int
    reset_seconds: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {
            REMAINING_HEADER: str(self.remaining),
            RESET_HEADER: str(self.reset_seconds),
        }


class TokenBucket:
    def __init__(
        self, per_minute: int, burst_seconds: float, clock: Callable[[], float]
    ) -> None:
        self.rate = per_minute / 60
        self.capacity = max(1.0, self.rate * burst_seconds)
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def take(self) -> Allowance:
        """Take one token if there is one; either way, say when there will be."""
        self._refill()
        allowed = self._tokens >= 1
        if allowed:
            self._tokens -= 1
        missing_for_one = max(0.0, 1 - self._tokens)
        return Allowance(
            allowed=allowed,
            remaining=math.floor(self._tokens),
            reset_seconds=math.ceil((self.capacity - self._tokens) / self.rate),
            retry_after=max(1, math.ceil(missing_for_one / self.rate)),
        )

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now


class RateLimiter:
    """The buckets of every account that has made a request."""

    def __init__(
        self,
        rate_limit: int,
        create_rate_limit: int,
        burst_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = (rate_limit, create_rate_limit)
        self._burst_seconds = burst_seconds
        self._clock = clock
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}

    def admit(self, account: str, *, creation: bool) -> Allowance:
        """Draw for one request; a creation draws from both buckets."""
        requests, creations = self._buckets_of(account)
        allowance = requests.take()
        if not allowance.allowed or not creation:
            return allowance
        created = creations.take()
        if not created.allowed or created.remaining < allowance.remaining:
            return created
        return allowance

    def reset(self) -> None:
        self._buckets.clear()

    def _buckets_of(self, account: str) -> tuple[TokenBucket, TokenBucket]:
        if account not in self._buckets:
            self._buckets[account] = (
                TokenBucket(self._limits[0], self._burst_seconds, self._clock),
                TokenBucket(self._limits[1], self._burst_seconds, self._clock),
            )
        return self._buckets[account]
