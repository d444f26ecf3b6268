"""What a distributed limit is: its algorithm and parameters, its Lua arguments, and its local stand-in.

A `Limit` is a value: `Limit.gcra(rate, max_burst)`, `Limit.token_bucket(rate, burst)` or
`Limit.sliding_window(limit, window)`. It is the *global* limit, shared by every worker that talks to one Redis.
`local(workers)` makes the pure limiter of the same kind (from `jishi.core.resilience`) that stands in for it
while Redis is away, with the global rate and burst divided by the number of workers expected to share the limit,
so the workers together still admit about the global limit. Counts are rounded down (never above the global
limit) but kept at least 1, so a fallback never refuses everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from jishi.core.resilience import GCRA, RateLimiter, SlidingWindowCounter, TokenBucket

__all__ = ["Algorithm", "Limit"]


class Algorithm(Enum):
    """The algorithms a Redis limit can use; each has a Lua script and a pure local twin."""

    GCRA = "gcra"
    TOKEN_BUCKET = "token_bucket"
    SLIDING_WINDOW = "sliding_window"


@dataclass(frozen=True, slots=True)
class Limit:
    """A global rate limit. Build it with `gcra`, `token_bucket` or `sliding_window`."""

    algorithm: Algorithm
    rate: float  # permits per second (for a sliding window: limit / window)
    burst: float  # GCRA: max_burst + 1; token bucket: burst; sliding window: limit
    window: float = 0.0  # sliding window only: its length in seconds

    @classmethod
    def gcra(cls, rate: float, max_burst: int = 0) -> Limit:
        """`rate` per second, bursts of `max_burst + 1` (redis-cell's CL.THROTTLE)."""
        GCRA(rate, max_burst)  # validates, with the core's error messages
        return cls(Algorithm.GCRA, float(rate), float(max_burst + 1))

    @classmethod
    def token_bucket(cls, rate: float, burst: float) -> Limit:
        """`burst` tokens, refilled at `rate` per second, starting full."""
        TokenBucket(rate, burst)
        return cls(Algorithm.TOKEN_BUCKET, float(rate), float(burst))

    @classmethod
    def sliding_window(cls, limit: int, window: float) -> Limit:
        """About `limit` permits per sliding `window` seconds (the two-counter estimate)."""
        SlidingWindowCounter(limit, window)
        return cls(Algorithm.SLIDING_WINDOW, limit / window, float(limit), float(window))

    def local(self, workers: int = 1) -> RateLimiter:
        """The pure limiter of the same kind with this limit's share for one of `workers` workers."""
        if workers < 1:
            raise ValueError(f"rate limiter workers must be at least 1, not {workers}")
        share = max(1, math.floor(self.burst / workers))
        if self.algorithm is Algorithm.GCRA:
            return GCRA(self.rate / workers, share - 1)
        if self.algorithm is Algorithm.TOKEN_BUCKET:
            return TokenBucket(self.rate / workers, self.burst / workers if self.burst >= workers else 1.0)
        return SlidingWindowCounter(share, self.window)

    def script_args(self) -> tuple[float, ...]:
        """The parameters the algorithm's Lua script takes after `now` and `n`."""
        if self.algorithm is Algorithm.GCRA:
            interval = 1.0 / self.rate
            return (interval, interval * self.burst, int(self.burst))
        if self.algorithm is Algorithm.TOKEN_BUCKET:
            return (self.rate, self.burst)
        return (int(self.burst), self.window)
