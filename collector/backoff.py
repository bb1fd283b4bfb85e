"""Capped exponential backoff with full jitter, for reconnects and retried writes.

Delay n (0-based) is drawn uniformly from ``[0, min(cap, base * 2**n)]`` ("full jitter",
AWS Architecture Blog, *Exponential Backoff and Jitter*, 2015), so many collectors that lost
the same broker do not reconnect in lock-step. Pure: the random source is injectable.
"""

from __future__ import annotations

import random


class Backoff:
    """Successive retry delays in seconds; :meth:`reset` after a success."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """Upper bound of the next delay, in s (base doubling per attempt, capped)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, 62))

    def next(self) -> float:
        """Draw the next delay in s and count the attempt."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
