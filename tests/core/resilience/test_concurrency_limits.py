"""Adaptive concurrency limits: AIMD and gradient updates, and convergence against a simulated backend."""

from __future__ import annotations

from collections import deque

import pytest

from jishi.core.resilience import AIMDLimit, ConcurrencyLimiter, GradientLimit, WindowedLimit


def test_aimd_adds_one_when_used_and_backs_off_on_drops() -> None:
    """+1 while inflight ≥ limit/2; ×0.9 (floored) on a drop or an RTT over the timeout; idle samples keep it."""
    a = AIMDLimit(10, timeout=1.0)
    assert a.update(0.1, 5, False) == 11
    assert a.update(0.1, 2, False) == 11
    assert a.update(0.1, 11, True) == 9
    assert a.update(2.0, 9, False) == 8


def test_limiter_sheds_over_the_limit_and_learns_on_release() -> None:
    """The limiter admits `limit` calls, sheds the next, and releasing with samples moves the limit."""
    lim = ConcurrencyLimiter(AIMDLimit(2, max_limit=3))
    first, second = lim.try_acquire(), lim.try_acquire()
    assert (first, second, lim.try_acquire(), lim.rejected) == (1, 2, 0, 1)
    assert lim.release(second, 0.01) == 3
    assert lim.try_acquire() == 2
    lim.release_ignored()
    lim.release(first, 0.01)
    with pytest.raises(ValueError, match="without a call in flight"):
        lim.release(1, 0.01)


def simulate(limiter: ConcurrencyLimiter, capacity: int, steps: int, base_rtt: float = 0.01) -> list[int]:
    """A saturating client against a backend that serves `capacity` calls at once, one completion per step.

    Calls complete first-in first-out. A call admitted as the t-th in flight takes base_rtt × max(1, t/capacity)
    (it queued) and is dropped when t > 2 × capacity. Returns the limit after each step.
    """
    queue: deque[int] = deque()
    history = []
    for _ in range(steps):
        while (ticket := limiter.try_acquire()) > 0:
            queue.append(ticket)
        t = queue.popleft()
        limiter.release(t, base_rtt * max(1.0, t / capacity), dropped=t > 2 * capacity)
        history.append(limiter.limit)
    return history


def test_windowed_aimd_converges_to_a_sawtooth_under_the_drop_point() -> None:
    """Against a backend that drops past 40 concurrent calls, windowed AIMD saws between about 28 and 41."""
    history = simulate(ConcurrencyLimiter(WindowedLimit(AIMDLimit(5, max_limit=500))), capacity=20, steps=20_000)
    tail = history[-5000:]
    assert min(tail) >= 25 and max(tail) <= 41
    assert max(tail) - min(tail) >= 5  # it keeps probing


def test_per_sample_aimd_collapses_when_feedback_lags() -> None:
    """Why WindowedLimit exists: raw AIMD cuts once per late dropped sample and falls to its minimum."""
    history = simulate(ConcurrencyLimiter(AIMDLimit(5, max_limit=500)), capacity=20, steps=2000)
    assert min(history[-1000:]) == 1


def test_gradient_grows_to_the_max_while_latency_holds() -> None:
    """With RTT flat (a backend far from saturation), the gradient limit grows steadily to max_limit."""
    history = simulate(ConcurrencyLimiter(GradientLimit(10, max_limit=100)), capacity=10_000, steps=500)
    assert history[-1] == 100
    assert history == sorted(history)


def test_windowed_gradient_settles_within_the_rtt_tolerance_band() -> None:
    """Past capacity 50 RTT grows; the limit settles between 1.5× (RTT tolerance) and 2× (drops) the capacity."""
    history = simulate(ConcurrencyLimiter(WindowedLimit(GradientLimit(10, max_limit=1000))), capacity=50, steps=20_000)
    tail = history[-5000:]
    assert min(tail) >= 60 and max(tail) <= 105, (min(tail), max(tail))


def test_gradient_backs_off_on_drops_and_ignores_app_limited_samples() -> None:
    """A dropped sample shrinks the limit; a sample with inflight under half the limit leaves it alone."""
    g = GradientLimit(40)
    assert g.update(0.01, 5, False) == 40
    before = g.limit
    assert g.update(0.01, 40, True) < before


def test_windowed_limit_updates_once_per_window() -> None:
    """10-sample windows: nine samples change nothing; the tenth passes the mean RTT and any drop on."""
    w = WindowedLimit(AIMDLimit(8), min_samples=10)
    assert [w.update(0.01, 8, i == 3) for i in range(9)] == [8] * 9
    assert w.update(0.01, 8, False) == 7  # one cut (8 × 0.9, floored) for the whole window


def test_bounds_are_checked() -> None:
    """min ≤ initial ≤ max is required, with a message naming all three."""
    with pytest.raises(ValueError, match="1 <= min_limit <= initial <= max_limit"):
        AIMDLimit(5, min_limit=10)
