"""Keyed rate limiting: one limiter per key (client IP, header value, JWT subject, route), bounded in memory.

Theory of operation
-------------------
`KeyedLimiter(factory, max_keys)` makes a limiter with `factory()` the first time a key is seen and keeps the
keys in least-recently-used order. When a new key would make more than `max_keys`, the least recently used key
is evicted; `evictions` counts them. An evicted key that comes back starts with a fresh (full) limiter, so
eviction errs towards admitting: size `max_keys` above the number of keys active within one limiter window, and
call `sweep(now, idle)` periodically to drop keys unused for `idle` seconds (choose `idle` ≥ the time a limiter
takes to become full again, and dropping them is invisible).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from jishi.core.resilience.limiter import Decision, RateLimiter

__all__ = ["KeyedLimiter"]

K = TypeVar("K", bound=Hashable)
L = TypeVar("L", bound=RateLimiter)


class KeyedLimiter(Generic[K, L]):
    """A limiter per key, at most `max_keys` of them, least recently used evicted first."""

    __slots__ = ("_factory", "_last", "_limiters", "evictions", "max_keys")

    def __init__(self, factory: Callable[[], L], max_keys: int = 10_000) -> None:
        if max_keys < 1:
            raise ValueError(f"keyed rate limiter max_keys must be at least 1, not {max_keys}")
        self._factory = factory
        self.max_keys = max_keys
        self._limiters: OrderedDict[K, L] = OrderedDict()
        self._last: dict[K, float] = {}
        self.evictions = 0

    def try_acquire(self, key: K, now: float, n: int = 1) -> Decision:
        """Ask `key`'s limiter for `n` permits at `now`."""
        limiters = self._limiters
        limiter = limiters.get(key)
        if limiter is None:
            limiter = limiters[key] = self._factory()
            if len(limiters) > self.max_keys:
                old, _ = limiters.popitem(last=False)
                del self._last[old]
                self.evictions += 1
        else:
            limiters.move_to_end(key)
        self._last[key] = now
        return limiter.try_acquire(now, n)

    def get(self, key: K) -> L | None:
        """The limiter of `key`, if it has one (does not count as a use)."""
        return self._limiters.get(key)

    def sweep(self, now: float, idle: float) -> int:
        """Drop the keys unused since `now − idle`; returns how many were dropped."""
        limiters, last = self._limiters, self._last
        dropped = 0
        while limiters:
            key = next(iter(limiters))
            if last[key] > now - idle:
                break
            del limiters[key], last[key]
            dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._limiters)

    def __contains__(self, key: object) -> bool:
        return key in self._limiters
