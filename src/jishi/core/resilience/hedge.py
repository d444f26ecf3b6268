"""Hedging: when an attempt is slow, send another to a different instance; the first success wins.

Theory of operation
-------------------
A `HedgePolicy(delay, max_hedges)` makes a `Hedge` per request at its start. The shell sleeps until
`hedge.next_at`; then `hedge.try_hedge(now, budget)` says whether to send one more attempt now:

- not before `next_at`, and at most `max_hedges` extra attempts (each `delay` after the previous one);
- only when the retry budget admits it (`RetryBudget.try_retry`, a hedge is a retry in flight): a hedge the budget
  refuses ends hedging for this request, counted in `hedge.denied`;
- never after `settle()` — the first response arrived; the shell cancels the other attempts.

Each admitted hedge holds one budget retry: the shell calls `budget.retry_finished()` when that attempt ends
(won, lost or cancelled). Only idempotent requests should be hedged; that is the shell's decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from jishi.core.resilience.budget import RetryBudget

__all__ = ["Hedge", "HedgePolicy"]


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    delay: float  # seconds after an attempt starts before the next hedge may be sent
    max_hedges: int = 1  # extra attempts at most

    def __post_init__(self) -> None:
        if not self.delay > 0:
            raise ValueError(f"hedge delay must be positive seconds, not {self.delay!r}")
        if self.max_hedges < 1:
            raise ValueError(f"hedge max_hedges must be at least 1, not {self.max_hedges}")

    def start(self, now: float) -> Hedge:
        """The hedging state of a request whose first attempt starts at `now`."""
        return Hedge(self, now + self.delay)


class Hedge:
    """One request's hedging: when the next hedge is due and how many were sent."""

    __slots__ = ("denied", "next_at", "policy", "sent")

    def __init__(self, policy: HedgePolicy, next_at: float) -> None:
        self.policy = policy
        self.next_at: float | None = next_at  # None: no more hedges for this request
        self.sent = 0
        self.denied = False

    def try_hedge(self, now: float, budget: RetryBudget | None = None) -> bool:
        """Send a hedge at `now`? True reserves one budget retry the shell must later finish."""
        if self.next_at is None or now < self.next_at:
            return False
        if budget is not None and not budget.try_retry():
            self.denied = True
            self.next_at = None
            return False
        self.sent += 1
        self.next_at = now + self.policy.delay if self.sent < self.policy.max_hedges else None
        return True

    def settle(self) -> None:
        """A response won: no more hedges."""
        self.next_at = None
