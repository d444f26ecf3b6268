"""Rate limiters against simple reference models (hypothesis): limits hold, Retry-After is exact.

Times are whole numbers (any unit: the limiters do not care) and rates are powers of two, so float arithmetic is
exact and a decision can be compared with the reference's exactly.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from jishi.core.resilience import (
    GCRA,
    FixedWindow,
    LeakyBucketMeter,
    LeakyBucketQueue,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    WarmUpLimiter,
)

# (time step, permits asked): steps of 0–5 time units, 1–3 permits
requests = st.lists(st.tuples(st.integers(0, 5), st.integers(1, 3)), min_size=1, max_size=120)
limits = st.integers(1, 8)
windows = st.integers(1, 12)
rates = st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0])


def run(limiter: RateLimiter, reqs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Feed the requests; returns the admitted ones as (time, permits)."""
    now, out = 0, []
    for step, n in reqs:
        now += step
        if limiter.try_acquire(float(now), n)[0]:
            out.append((now, n))
    return out


def in_interval(admitted: list[tuple[int, int]], lo: float, hi: float) -> int:
    """Permits admitted at times t with lo < t ≤ hi."""
    return sum(n for t, n in admitted if lo < t <= hi)


@settings(max_examples=300, deadline=None)
@given(limits, windows, requests)
def test_sliding_log_matches_the_exact_reference(limit: int, window: int, reqs: list[tuple[int, int]]) -> None:
    """Every decision equals the naive model's: admit iff permits in (now − w, now] + n ≤ limit."""
    log, ref = SlidingWindowLog(limit, float(window)), []
    now = 0
    for step, n in reqs:
        now += step
        expected = in_interval(ref, now - window, now) + n <= limit
        assert log.try_acquire(float(now), n)[0] is expected
        if expected:
            ref.append((now, n))


@settings(max_examples=300, deadline=None)
@given(limits, windows, requests)
def test_fixed_window_matches_reference_and_edges_stay_within_twice_the_limit(
    limit: int, window: int, reqs: list[tuple[int, int]]
) -> None:
    """Decisions equal per-aligned-window counting; any interval of one window's length holds ≤ 2 × limit."""
    fw, counts = FixedWindow(limit, float(window)), dict[int, int]()
    now, admitted = 0, []
    for step, n in reqs:
        now += step
        k = now // window
        expected = counts.get(k, 0) + n <= limit
        assert fw.try_acquire(float(now), n)[0] is expected
        if expected:
            counts[k] = counts.get(k, 0) + n
            admitted.append((now, n))
    assert all(c <= limit for c in counts.values())
    assert all(in_interval(admitted, t - window, t) <= 2 * limit for t, _ in admitted)


@settings(max_examples=300, deadline=None)
@given(limits, windows, requests)
def test_sliding_counter_never_exceeds_the_limit_in_an_aligned_window(
    limit: int, window: int, reqs: list[tuple[int, int]]
) -> None:
    """Aligned windows hold ≤ limit; an unaligned interval of one window's length holds < 2 × limit."""
    admitted = run(SlidingWindowCounter(limit, float(window)), reqs)
    per_window: dict[int, int] = {}
    for t, n in admitted:
        per_window[t // window] = per_window.get(t // window, 0) + n
    assert all(c <= limit for c in per_window.values())
    assert all(in_interval(admitted, t - window, t) < 2 * limit for t, _ in admitted)


@settings(max_examples=300, deadline=None)
@given(rates, st.integers(1, 8), requests)
def test_token_bucket_matches_the_exact_reference(rate: float, burst: int, reqs: list[tuple[int, int]]) -> None:
    """Decisions equal a Fraction-exact bucket's, and no interval admits more than burst + rate × length."""
    tb, r = TokenBucket(rate, burst), Fraction(rate)
    tokens, last, now, admitted = Fraction(burst), 0, 0, []
    for step, n in reqs:
        now += step
        tokens = min(Fraction(burst), tokens + (now - last) * r)
        last = now
        expected = tokens >= n
        assert tb.try_acquire(float(now), n)[0] is expected
        if expected:
            tokens -= n
            admitted.append((now, n))
    for a, _ in admitted:
        for b, _ in admitted:
            if b >= a:
                assert in_interval(admitted, a - 1e-9, b) <= burst + rate * (b - a)


@settings(max_examples=200, deadline=None)
@given(rates, st.integers(1, 8), requests)
def test_leaky_meter_and_gcra_decide_exactly_as_the_token_bucket(
    rate: float, burst: int, reqs: list[tuple[int, int]]
) -> None:
    """A meter of capacity b and GCRA with max_burst b − 1 are the token bucket of burst b, decision for decision."""
    tb, meter, gcra = TokenBucket(rate, burst), LeakyBucketMeter(rate, burst), GCRA(rate, burst - 1)
    now = 0
    for step, n in reqs:
        now += step
        want = tb.try_acquire(float(now), n)
        assert meter.try_acquire(float(now), n) == want
        assert gcra.try_acquire(float(now), n) == want


@settings(max_examples=200, deadline=None)
@given(rates, st.integers(0, 5), requests)
def test_leaky_queue_spaces_departures_and_bounds_the_wait(
    rate: float, max_queue: int, reqs: list[tuple[int, int]]
) -> None:
    """Departures are ≥ n/rate apart in order, and no admitted request waits longer than max_queue / rate."""
    q, now, departures = LeakyBucketQueue(rate, max_queue), 0, []
    for step, n in reqs:
        now += step
        ok, delay = q.try_acquire(float(now), n)
        if ok:
            assert 0 <= delay <= max_queue / rate + 1e-9
            departures.append((now + delay, n))
    for (t0, n0), (t1, _) in itertools.pairwise(departures):
        assert t1 - t0 >= n0 / rate - 1e-9


LIMITERS: list[Callable[[], RateLimiter]] = [
    lambda: FixedWindow(5, 10.0),
    lambda: SlidingWindowLog(5, 10.0),
    lambda: SlidingWindowCounter(5, 10.0),
    lambda: TokenBucket(0.5, 5),
    lambda: LeakyBucketMeter(0.5, 5),
    lambda: LeakyBucketQueue(0.5, 2),
    lambda: GCRA(0.5, 4),
    lambda: WarmUpLimiter(2.0, 10.0),
]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(LIMITERS) - 1), requests)
def test_retry_after_is_exact_for_every_limiter(which: int, reqs: list[tuple[int, int]]) -> None:
    """After a refusal with Retry-After r, asking at now + r is admitted, and asking 1 ms before r is not."""
    limiter, now = LIMITERS[which](), 0
    for step, n in reqs:
        now += step
        before = copy.deepcopy(limiter)
        ok, retry = limiter.try_acquire(float(now), n)
        if ok or math.isinf(retry):
            continue
        assert retry > 0
        assert copy.deepcopy(before).try_acquire(now + retry, n)[0], f"not admitted at now + {retry}"
        if retry > 1e-3:
            assert not copy.deepcopy(before).try_acquire(now + retry - 1e-3, n)[0], "admitted before Retry-After"
