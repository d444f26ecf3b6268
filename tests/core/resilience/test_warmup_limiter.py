"""Warm-up limiter: the exact warm-up curve from cold to the stable rate, and cooling down when idle."""

from __future__ import annotations

import itertools

import pytest

from jishi.core.resilience import WarmUpLimiter


def saturate(w: WarmUpLimiter, start: float, count: int) -> list[float]:
    """A client that always asks again at the Retry-After: the admission times of `count` requests."""
    now, times = start, []
    while len(times) < count:
        ok, retry = w.try_acquire(now)
        if ok:
            times.append(now)
        else:
            now += retry
    return times


def test_sentinel_thresholds_for_cold_factor_3() -> None:
    """rate 10/s, 3 s warm-up, cold factor 3: warning 15 permits, max 30 (Sentinel's warningToken/maxToken)."""
    w = WarmUpLimiter(10.0, 3.0)
    assert w.warning_permits == pytest.approx(15.0)
    assert w.max_permits == pytest.approx(30.0)
    assert w.interval() == pytest.approx(0.3)  # cold: rate / cold_factor


def test_warm_up_curve_reaches_the_stable_rate_after_exactly_the_warm_up_period() -> None:
    """Under full load the intervals shrink linearly from ≈ 3/rate to 1/rate, reaching it at t = 3 s exactly."""
    w = WarmUpLimiter(10.0, 3.0)
    times = saturate(w, 0.0, 40)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] == pytest.approx(0.3 - 0.2 / 15 / 2)  # the first permit, from the top of the slope
    assert all(a > b for a, b in itertools.pairwise(gaps[:15]))  # strictly warming up
    assert times[15] == pytest.approx(3.0)  # the 15 permits above the warning level took the warm-up period
    assert gaps[15:] == pytest.approx([0.1] * len(gaps[15:]))  # then the stable rate
    assert sum(1 for t in times if t < 1.0) == 4  # about rate / cold_factor in the first second


def test_idle_for_the_warm_up_period_makes_it_cold_again() -> None:
    """After warming up, a 1 s pause keeps it warm; a pause of the warm-up period restores the cold interval."""
    w = WarmUpLimiter(10.0, 3.0)
    next_free = saturate(w, 0.0, 40)[-1] + 0.1
    assert w.try_acquire(next_free + 1.0)[0]  # 10 permits stored back, still under the warning level of 15
    assert w.interval() == pytest.approx(0.1)
    w2 = WarmUpLimiter(10.0, 3.0)
    next_free2 = saturate(w2, 0.0, 40)[-1] + 0.1
    assert w2.try_acquire(next_free2 + 3.0)[0]
    assert w2.interval() == pytest.approx(0.3 - 0.2 / 15)  # full again (30), minus the one just taken


def test_retry_after_is_the_next_free_time() -> None:
    """A request before its time is refused with exactly the wait to the next free time."""
    w = WarmUpLimiter(10.0, 3.0)
    assert w.try_acquire(5.0) == (True, 0.0)
    ok, retry = w.try_acquire(5.1)
    assert not ok and retry == pytest.approx(0.3 - 0.2 / 15 / 2 - 0.1)


def test_cold_factor_must_exceed_one() -> None:
    """A cold factor of 1 would mean no warm-up and a division by zero: refused."""
    with pytest.raises(ValueError, match="cold_factor must be greater than 1"):
        WarmUpLimiter(10.0, 3.0, cold_factor=1.0)
