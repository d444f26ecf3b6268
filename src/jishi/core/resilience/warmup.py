"""Warm-up limiter: after a cold spell, the rate climbs from `rate / cold_factor` to `rate` over `warmup` seconds.

Theory of operation
-------------------
Sentinel's warm-up flow control (itself Guava's `SmoothWarmingUp`): a service that has been idle — cold caches,
cold connection pools, an unJITted path — is not sent its full rate at once. The limiter keeps *stored permits*,
a measure of coldness, between 0 and `max_permits`, and spaces requests by an interval that depends on them:

    stable interval   s = 1 / rate
    cold interval     c = s × cold_factor                           (Sentinel's default cold factor: 3)
    warning permits   w = warmup × rate / (cold_factor − 1)         (Sentinel's warningToken)
    max permits       m = w + 2 × warmup / (s + c)                  (Sentinel's maxToken)

    interval(p) = s                                       for p ≤ w
                = s + (p − w) × (c − s) / (m − w)         for w < p ≤ m   (linear from s up to c)

Spending a permit from storage costs `interval(p)` at the level it is taken from; the area under the slope is
exactly `warmup` seconds, so under full load the rate climbs from `rate / cold_factor` to `rate` in `warmup`
seconds. While no request is waiting (`now` past the next free time), storage refills at `m / warmup` per second,
so `warmup` idle seconds make the limiter fully cold again. It starts cold.

As in Guava's `tryAcquire` with no timeout: a request is admitted if its time has come (`now ≥ next_free`), is
charged its cost by pushing `next_free` forward, and otherwise is told Retry-After = `next_free − now` exactly.
"""

from __future__ import annotations

from jishi.core.resilience.limiter import ALLOW, EPSILON, INFINITE, Decision, positive

__all__ = ["WarmUpLimiter"]


class WarmUpLimiter:
    """`rate` per second once warm; starts at `rate / cold_factor` and warms up over `warmup` seconds."""

    __slots__ = (
        "_cold",
        "_cooldown",
        "_next_free",
        "_slope",
        "_stable",
        "_stored",
        "cold_factor",
        "max_permits",
        "rate",
        "warmup",
        "warning_permits",
    )

    def __init__(self, rate: float, warmup: float, cold_factor: float = 3.0) -> None:
        self.rate = positive("rate", rate)
        self.warmup = positive("warmup", warmup)
        if not cold_factor > 1:
            raise ValueError(f"rate limiter cold_factor must be greater than 1, not {cold_factor!r}")
        self.cold_factor = cold_factor
        self._stable = 1.0 / rate
        self._cold = self._stable * cold_factor
        self.warning_permits = warmup * rate / (cold_factor - 1.0)
        self.max_permits = self.warning_permits + 2.0 * warmup / (self._stable + self._cold)
        self._slope = (self._cold - self._stable) / (self.max_permits - self.warning_permits)
        self._cooldown = warmup / self.max_permits  # idle seconds per stored permit
        self._stored = self.max_permits
        self._next_free = -INFINITE

    def try_acquire(self, now: float, n: int = 1) -> Decision:
        """Admit `n` permits if their time has come; else the exact seconds until it will."""
        if n < 1:
            raise ValueError(f"a request takes at least 1 permit, not {n}")
        nxt = self._next_free
        if now + EPSILON < nxt:
            return False, nxt - now
        if now > nxt:
            if nxt != -INFINITE:
                stored = self._stored + (now - nxt) / self._cooldown
                self._stored = stored if stored < self.max_permits else self.max_permits
            nxt = now
        stored = self._stored
        spend = n if n < stored else stored
        self._next_free = nxt + self._cost(stored, spend) + (n - spend) * self._stable
        self._stored = stored - spend
        return ALLOW

    def interval(self) -> float:
        """The spacing a request taken now would cost, at the current level of stored permits."""
        return self._interval_at(self._stored)

    def _interval_at(self, permits: float) -> float:
        above = permits - self.warning_permits
        return self._stable + above * self._slope if above > 0 else self._stable

    def _cost(self, stored: float, spend: float) -> float:
        """Seconds charged for taking `spend` permits from a store of `stored` (the area under interval(p))."""
        above = stored - self.warning_permits
        cost = 0.0
        if above > 0:
            take = spend if spend < above else above
            # trapezoid between the levels `above` and `above − take` on the linear slope
            cost = take * (self._interval_at(stored) + self._interval_at(stored - take)) / 2.0
            spend -= take
        return cost + spend * self._stable
