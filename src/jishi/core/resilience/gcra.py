"""GCRA, the generic cell rate algorithm, with redis-cell's semantics (`CL.THROTTLE`).

Theory of operation
-------------------
GCRA is a token bucket kept as one number: the *theoretical arrival time* `tat`, when the bucket would next be
full again if nothing else came. With emission interval `T = 1/rate` and tolerance `τ = T × (max_burst + 1)`:

    new_tat  = max(tat, now) + n·T
    allow_at = new_tat − τ
    admitted  ⇔  now ≥ allow_at           → tat = new_tat
    refused   →  retry_after = allow_at − now   (exact; `inf` when n·T > τ, i.e. n > max_burst + 1)

So a fresh key admits `max_burst + 1` requests at once and then one every `T`, exactly as redis-cell's
`CL.THROTTLE key max_burst count period n` with `rate = count / period`. `throttle()` returns redis-cell's whole
answer (limit, remaining, retry_after, reset_after) for `X-RateLimit-*` headers; `try_acquire()` is the lean
`(allowed, retry_after)` of every limiter here. A refusal changes nothing.
"""

from __future__ import annotations

from typing import NamedTuple

from jishi.core.resilience.limiter import ALLOW, EPSILON, INFINITE, Decision, positive

__all__ = ["GCRA", "Throttle"]


class Throttle(NamedTuple):
    """redis-cell's answer to CL.THROTTLE (times in seconds; retry_after is -1 when admitted, as there)."""

    allowed: bool
    limit: int  # max_burst + 1
    remaining: int  # requests that could still be admitted right now
    retry_after: float  # seconds until a retry is admitted; -1 when admitted, inf when never
    reset_after: float  # seconds until the bucket is entirely full again


class GCRA:
    """`rate` permits per second with bursts of `max_burst + 1`, as redis-cell."""

    __slots__ = ("_interval", "_tat", "_tolerance", "max_burst", "rate")

    def __init__(self, rate: float, max_burst: int = 0) -> None:
        self.rate = positive("rate", rate)
        if max_burst < 0:
            raise ValueError(f"rate limiter max_burst must be >= 0, not {max_burst}")
        self.max_burst = max_burst
        self._interval = 1.0 / rate
        self._tolerance = self._interval * (max_burst + 1)
        self._tat = -INFINITE

    @classmethod
    def per(cls, count: int, period: float, max_burst: int = 0) -> GCRA:
        """redis-cell's parameters: `count` per `period` seconds."""
        return cls(positive("count", count) / positive("period", period), max_burst)

    def try_acquire(self, now: float, n: int = 1) -> Decision:
        """Admit `n` permits at `now`, or the exact seconds until they would be."""
        tat = self._tat if self._tat > now else now
        new_tat = tat + n * self._interval
        allow_at = new_tat - self._tolerance
        if now + EPSILON >= allow_at and n >= 1:
            self._tat = new_tat
            return ALLOW
        if n < 1:
            raise ValueError(f"a request takes at least 1 permit, not {n}")
        if n * self._interval > self._tolerance + EPSILON:
            return False, INFINITE
        return False, allow_at - now

    def throttle(self, now: float, n: int = 1) -> Throttle:
        """`try_acquire` with redis-cell's full answer."""
        allowed, retry = self.try_acquire(now, n)
        tat = self._tat if self._tat > now else now
        reset_after = tat - now
        left = self._tolerance - reset_after  # room, in seconds of emission
        remaining = int((left + EPSILON) / self._interval) if left > -self._interval else 0
        return Throttle(allowed, self.max_burst + 1, max(0, remaining), -1.0 if allowed else retry, reset_after)
