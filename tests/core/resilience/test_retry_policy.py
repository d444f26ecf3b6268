"""Retry schedules, retry budget and hedging: bounds with a seeded rng, budget arithmetic, hedge timing."""

from __future__ import annotations

import random

import pytest

from jishi.core.resilience import HedgePolicy, Jitter, RetryBudget, RetryPolicy


def delays(policy: RetryPolicy, seed: int = 7) -> list[float]:
    """Every delay of one chain that fails every attempt."""
    s, rng, out = policy.schedule(), random.Random(seed), []
    while (d := s.next_delay(rng)) is not None:
        out.append(d)
    return out


def test_no_jitter_is_capped_exponential() -> None:
    """base 25 ms, ×2, cap 250 ms, 7 attempts: 25, 50, 100, 200, 250, 250 ms."""
    p = RetryPolicy(max_attempts=7, base=0.025, cap=0.25, jitter=Jitter.NONE)
    assert delays(p) == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.25, 0.25])


def test_max_attempts_counts_the_first_attempt() -> None:
    """3 attempts = 2 retries; 1 attempt = none."""
    assert len(delays(RetryPolicy(max_attempts=3))) == 2
    assert delays(RetryPolicy(max_attempts=1)) == []


@pytest.mark.parametrize("seed", range(20))
def test_full_and_equal_jitter_stay_under_their_ceilings(seed: int) -> None:
    """FULL draws in [0, ceiling(n)], EQUAL in [ceiling(n)/2, ceiling(n)]."""
    full = RetryPolicy(max_attempts=8, jitter=Jitter.FULL)
    equal = RetryPolicy(max_attempts=8, jitter=Jitter.EQUAL)
    for n, d in enumerate(delays(full, seed)):
        assert 0 <= d <= full.ceiling(n)
    for n, d in enumerate(delays(equal, seed)):
        assert equal.ceiling(n) / 2 <= d <= equal.ceiling(n)


@pytest.mark.parametrize("seed", range(20))
def test_decorrelated_jitter_stays_in_base_to_cap_and_within_three_times_the_last(seed: int) -> None:
    """DECORRELATED: every delay in [base, cap] and at most 3 × the previous one."""
    p = RetryPolicy(max_attempts=12, base=0.01, cap=1.0, jitter=Jitter.DECORRELATED)
    prev = p.base
    for d in delays(p, seed):
        assert p.base <= d <= min(p.cap, 3 * prev)
        prev = d


def test_seeded_schedules_repeat_exactly() -> None:
    """The same seed gives the same delays: the policy draws only from the rng it is given."""
    p = RetryPolicy(max_attempts=6, jitter=Jitter.DECORRELATED)
    assert delays(p, 42) == delays(p, 42)
    assert delays(p, 42) != delays(p, 43)


def test_budget_allows_the_minimum_then_a_share_of_active_requests() -> None:
    """20 %, min 3: with 5 requests 3 retries fit; with 100 requests 20 fit, the 21st is denied."""
    b = RetryBudget(20.0, 3)
    for _ in range(5):
        b.request_started()
    assert [b.try_retry() for _ in range(4)] == [True, True, True, False]
    for _ in range(95):
        b.request_started()
    assert b.allowance() == 20.0
    assert sum(b.try_retry() for _ in range(30)) == 17
    assert (b.active_retries, b.denied) == (20, 14)
    b.retry_finished()
    assert b.try_retry()


def test_budget_refuses_unbalanced_finishes() -> None:
    """Finishing more retries or requests than were started is a shell bug: it raises."""
    b = RetryBudget()
    with pytest.raises(ValueError, match="retry_finished"):
        b.retry_finished()
    with pytest.raises(ValueError, match="request_finished"):
        b.request_finished()


def test_hedge_is_due_after_the_delay_and_limited_to_max_hedges() -> None:
    """delay 50 ms, 2 hedges: none at 40 ms, one at 50 ms, the next at 100 ms, none after."""
    h = HedgePolicy(0.05, max_hedges=2).start(1.0)
    assert not h.try_hedge(1.04)
    assert h.try_hedge(1.05)
    assert h.next_at == pytest.approx(1.1)
    assert h.try_hedge(1.1)
    assert h.next_at is None and not h.try_hedge(5.0)
    assert h.sent == 2


def test_hedge_needs_the_budget_and_stops_when_refused_or_settled() -> None:
    """A hedge takes a budget retry; a refused one ends hedging; settle() ends it too."""
    budget = RetryBudget(0.0, 1)
    h1 = HedgePolicy(0.01, max_hedges=3).start(0.0)
    assert h1.try_hedge(0.01, budget)
    h2 = HedgePolicy(0.01).start(0.0)
    assert not h2.try_hedge(0.01, budget)
    assert h2.denied and h2.next_at is None
    budget.retry_finished()
    h1.settle()
    assert not h1.try_hedge(1.0, budget)
