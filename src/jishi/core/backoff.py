"""Restart backoff: how long to wait before restarting an instance that exited on its own.

Theory of operation
-------------------
Each crash (an exit the agent did not ask for) gets a delay that grows exponentially:

    delay(n) = min(max_delay, initial_delay × multiplier^n) × (1 ± jitter)      n = crashes since the last reset

and the jittered value is clamped to `max_delay` again, so the cap is a hard guarantee (at the cap, jitter only
spreads restarts below it). The policy never gives up: there is no terminal FATAL state as in supervisord; a
crash loop settles at one restart per ~`max_delay` for as long as it lasts.

The count resets once the instance has stayed healthy (passing or warning) for `reset_after` seconds without
interruption; the next crash then restarts after `initial_delay` again. Operator stops, scale-downs and
replacements are not crashes: the shell does not report them here, and `forget_health()` clears the healthy
stretch without counting anything.

Nothing here reads a clock or draws randomness itself: `now` and `rng` are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["BackoffPolicy", "RestartBackoff", "Rng"]


class Rng(Protocol):
    """What this module draws from: `random.Random` satisfies it (and a seeded one makes tests exact)."""

    def uniform(self, a: float, b: float, /) -> float: ...


class BackoffPolicy(Protocol):
    """The fields of `jishi.registry.model.RestartPolicy` this module reads."""

    @property
    def initial_delay(self) -> float: ...
    @property
    def max_delay(self) -> float: ...
    @property
    def multiplier(self) -> float: ...
    @property
    def reset_after(self) -> float: ...
    @property
    def jitter(self) -> float: ...


@dataclass
class RestartBackoff:
    """Backoff state of one supervised slot. Feed it health changes and crashes; it answers with delays."""

    policy: BackoffPolicy
    crashes: int = 0  # consecutive crashes since the last reset
    healthy_since: float | None = None  # start of the current uninterrupted healthy stretch

    def base_delay(self, n: int) -> float:
        """The un-jittered delay after the n-th consecutive crash (n from 0), capped at max_delay."""
        p = self.policy
        try:
            delay = p.initial_delay * p.multiplier**n
        except OverflowError:
            return p.max_delay
        return min(p.max_delay, delay)

    def healthy(self, now: float) -> None:
        """The instance is passing (or warning) at `now`; starts the healthy stretch if not already running."""
        if self.healthy_since is None:
            self.healthy_since = now

    def unhealthy(self, now: float) -> None:
        """The instance went critical at `now`; a stretch long enough already earned the reset."""
        self._settle(now)
        self.healthy_since = None

    def forget_health(self) -> None:
        """The process ended by the operator's choice: no crash is counted, the healthy stretch ends."""
        self.healthy_since = None

    def crashed(self, now: float, rng: Rng) -> float:
        """The process exited on its own at `now`; returns the seconds to wait before restarting it."""
        self._settle(now)
        self.healthy_since = None
        base = self.base_delay(self.crashes)
        self.crashes += 1
        jitter = self.policy.jitter
        delay = base * (1.0 + jitter * rng.uniform(-1.0, 1.0)) if jitter else base
        return max(0.0, min(self.policy.max_delay, delay))

    def _settle(self, now: float) -> None:
        if self.healthy_since is not None and now - self.healthy_since >= self.policy.reset_after:
            self.crashes = 0
