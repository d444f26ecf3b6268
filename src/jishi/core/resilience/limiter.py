"""What every rate limiter answers, and the conventions they share.

Theory of operation
-------------------
A limiter is asked `try_acquire(now, n=1)` for `n` permits at time `now` (seconds, from one monotonic clock)
and answers a `Decision`, a plain `(allowed, seconds)` tuple:

- `(True, 0.0)` — admitted now (the shared constant `ALLOW`, so the admit path allocates nothing);
- `(False, retry_after)` — refused; `retry_after` is exact: asking again at `now + retry_after` with no other
  traffic in between is admitted. It is `math.inf` when `n` can never be admitted (more than the limiter holds);
- the leaky-bucket queue alone admits with a delay: `(True, delay)` means "go at `now + delay`".

A refusal changes nothing, so asking again costs nothing extra. Time comparisons forgive `EPSILON` (1 ns) of
float rounding, so that `now + retry_after` is admitted even when the addition rounds down.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ALLOW", "EPSILON", "INFINITE", "Decision", "RateLimiter", "check_permits", "positive"]

Decision = tuple[bool, float]
ALLOW: Decision = (True, 0.0)
EPSILON = 1e-9
INFINITE = float("inf")


class RateLimiter(Protocol):
    """Any of this package's limiters."""

    def try_acquire(self, now: float, n: int = 1) -> Decision: ...


def positive(name: str, value: float) -> float:
    """`value` if it is > 0, else a ValueError naming the setting."""
    if not value > 0:
        raise ValueError(f"rate limiter {name} must be positive, not {value!r}")
    return value


def check_permits(n: int) -> None:
    """Refuse a request for fewer than one permit (a caller bug, not a rate decision)."""
    if n < 1:
        raise ValueError(f"a request takes at least 1 permit, not {n}")
