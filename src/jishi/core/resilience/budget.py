"""Retry budget (Envoy): retries may be in flight only while they are a small share of the traffic.

Theory of operation
-------------------
Fixed retry counts multiply load exactly when a backend is failing: with 3 attempts, an outage triples the
traffic. Envoy's budget bounds the *concurrent* retries instead:

    a retry may start  ⇔  active_retries < max(min_retry_concurrency, budget_percent% × active_requests)

`active_requests` counts call chains in flight (each chain once, however many attempts it makes);
`active_retries` counts retry and hedge attempts in flight. Envoy's defaults: 20 %, at least 3. The shell calls
`request_started()`/`request_finished()` around each chain and, for each extra attempt, `try_retry()` before and
`retry_finished()` after it. Unbalanced calls raise (a shell bug), changing nothing.
"""

from __future__ import annotations

__all__ = ["RetryBudget"]


class RetryBudget:
    """Concurrent retries at most `budget_percent` % of active requests, but always `min_retry_concurrency`."""

    __slots__ = ("_share", "active_requests", "active_retries", "budget_percent", "denied", "min_retry_concurrency")

    def __init__(self, budget_percent: float = 20.0, min_retry_concurrency: int = 3) -> None:
        if not 0 <= budget_percent <= 100:
            raise ValueError(f"retry budget_percent must be a percent in [0, 100], not {budget_percent!r}")
        if min_retry_concurrency < 0:
            raise ValueError(f"retry min_retry_concurrency must be >= 0, not {min_retry_concurrency}")
        self.budget_percent = budget_percent
        self.min_retry_concurrency = min_retry_concurrency
        self._share = budget_percent / 100.0
        self.active_requests = 0
        self.active_retries = 0
        self.denied = 0

    def allowance(self) -> float:
        """How many retries may be in flight right now."""
        return max(float(self.min_retry_concurrency), self._share * self.active_requests)

    def request_started(self) -> None:
        self.active_requests += 1

    def request_finished(self) -> None:
        if self.active_requests < 1:
            raise ValueError("retry budget: request_finished() without a request in flight")
        self.active_requests -= 1

    def try_retry(self) -> bool:
        """May one more retry (or hedge) start now? True reserves it until `retry_finished()`."""
        if self.active_retries < self.allowance():
            self.active_retries += 1
            return True
        self.denied += 1
        return False

    def retry_finished(self) -> None:
        if self.active_retries < 1:
            raise ValueError("retry budget: retry_finished() without a retry in flight")
        self.active_retries -= 1
