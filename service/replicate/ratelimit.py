"""Client-side pacing, so Tuneyard stays below Replicate's limits instead of
bouncing off them: Replicate allows 3,000 requests a minute and 600 creations a
minute per account, with short bursts.
"""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum


class Kind(StrEnum):
    READ = "read"  # every request that creates nothing
    CREATE = "create"  # model and training creates, counted separately by Replicate


class TokenBucket:
    """Tokens refill at `per_minute / 60` a second up to `burst`; one per request."""

    def __init__(self, per_minute: float, burst: float) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._tokens = burst
        self._updated = time.monotonic()
        self._blocked_until = 0.0
        # Waiters queue on the lock, so they are served in arrival order.
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._refill(now)
                wait = max(self._blocked_until - now, 0.0)
                if wait == 0.0 and self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                if wait == 0.0:
                    wait = (1.0 - self._tokens) / self.rate
                await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds`: Replicate said it is throttling us."""
        self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)
        self._tokens = 0.0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now


class RateLimiter:
    """One bucket for reads and one for creates; a create takes a token of each,
    as it counts against both of Replicate's limits."""

    def __init__(self, per_minute: float, creates_per_minute: float) -> None:
        # A burst of a few seconds' worth rides out jitter without breaking the pace.
        self.buckets = {
            Kind.READ: TokenBucket(per_minute, burst=max(1.0, per_minute / 60 * 5)),
            Kind.CREATE: TokenBucket(
                creates_per_minute, burst=max(1.0, creates_per_minute / 60 * 2)
            ),
        }

    async def acquire(self, kind: Kind) -> None:
        if kind is Kind.CREATE:
            await self.buckets[Kind.CREATE].acquire()
        await self.buckets[Kind.READ].acquire()

    def pause(self, kind: Kind, seconds: float) -> None:
        self.buckets[kind].pause(seconds)
