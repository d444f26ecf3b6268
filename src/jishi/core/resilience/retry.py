"""Retry schedules: exponential backoff with jitter, and a bound on attempts.

Theory of operation
-------------------
A `RetryPolicy` is configuration; `policy.schedule()` is the state of one call chain. After each failed attempt
the shell asks `schedule.next_delay(rng)`: the seconds to sleep before the next attempt, or None when
`max_attempts` (the first attempt included) are used up. The n-th retry (n from 0) draws from

    ceiling(n)     = min(cap, base × multiplier^n)
    NONE           ceiling(n)
    FULL           uniform(0, ceiling(n))                              (AWS "full jitter")
    EQUAL          ceiling(n)/2 + uniform(0, ceiling(n)/2)             (AWS "equal jitter")
    DECORRELATED   min(cap, uniform(base, previous × 3)), previous starting at base   (AWS "decorrelated")

so every delay lies in [0, cap], and DECORRELATED's in [base, cap]. Envoy's defaults: base 25 ms, cap 10 × base.
Whether an outcome is worth retrying (idempotent method, connect failure, 5xx) and the retry budget
(`budget.py`) are separate decisions; the breaker should see the whole chain as one outcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Jitter", "RetryPolicy", "RetrySchedule", "Rng"]


class Rng(Protocol):
    """What a schedule draws from: `random.Random` satisfies it (seeded in tests)."""

    def uniform(self, a: float, b: float, /) -> float: ...


class Jitter(enum.Enum):
    NONE = "none"
    FULL = "full"
    EQUAL = "equal"
    DECORRELATED = "decorrelated"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts a call chain gets and how long to wait between them."""

    max_attempts: int = 3  # the first attempt included; 1 = no retries
    base: float = 0.025  # seconds
    cap: float = 0.25  # seconds
    multiplier: float = 2.0
    jitter: Jitter = Jitter.FULL

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"retry max_attempts must be at least 1 (the first attempt), not {self.max_attempts}")
        if not self.base > 0:
            raise ValueError(f"retry base must be positive seconds, not {self.base!r}")
        if not self.cap >= self.base:
            raise ValueError(f"retry cap must be at least base ({self.base!r}), not {self.cap!r}")
        if not self.multiplier >= 1:
            raise ValueError(f"retry multiplier must be at least 1, not {self.multiplier!r}")

    def ceiling(self, n: int) -> float:
        """The un-jittered delay before retry n (n from 0), capped."""
        try:
            return min(self.cap, self.base * self.multiplier**n)
        except OverflowError:
            return self.cap

    def schedule(self) -> RetrySchedule:
        """The retry state of one new call chain (its first attempt is about to be made)."""
        return RetrySchedule(self)


class RetrySchedule:
    """One call chain: counts attempts and draws each delay."""

    __slots__ = ("_previous", "attempts", "policy")

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.attempts = 1  # the first attempt is under way
        self._previous = policy.base

    @property
    def exhausted(self) -> bool:
        return self.attempts >= self.policy.max_attempts

    def next_delay(self, rng: Rng) -> float | None:
        """The attempt just made failed: seconds to wait before the next one, or None to give up."""
        p = self.policy
        if self.attempts >= p.max_attempts:
            return None
        n = self.attempts - 1
        self.attempts += 1
        if p.jitter is Jitter.DECORRELATED:
            delay = min(p.cap, rng.uniform(p.base, self._previous * 3.0))
            self._previous = delay
            return delay
        ceiling = p.ceiling(n)
        if p.jitter is Jitter.FULL:
            return rng.uniform(0.0, ceiling)
        if p.jitter is Jitter.EQUAL:
            return ceiling / 2.0 + rng.uniform(0.0, ceiling / 2.0)
        return ceiling
