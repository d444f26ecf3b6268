"""Rate limiters: exact-time scenarios for every limiter and its Retry-After."""

from __future__ import annotations

import math

import pytest

from jishi.core.resilience import (
    GCRA,
    FixedWindow,
    KeyedLimiter,
    LeakyBucketMeter,
    LeakyBucketQueue,
    SlidingWindowCounter,
    SlidingWindowLog,
    Throttle,
    TokenBucket,
)


def admitted(limiter: FixedWindow | SlidingWindowLog | SlidingWindowCounter, now: float, k: int) -> int:
    """Ask k times at `now`; how many were admitted."""
    return sum(limiter.try_acquire(now)[0] for _ in range(k))


def test_fixed_window_resets_on_aligned_boundaries_and_retries_at_the_next() -> None:
    """limit 3 per 10 s: the 4th call at t=12 is told to retry at 20 exactly, and is admitted then."""
    fw = FixedWindow(3, 10.0)
    assert admitted(fw, 12.0, 3) == 3
    assert fw.try_acquire(12.0) == (False, 8.0)
    assert fw.try_acquire(19.999)[0] is False
    assert fw.try_acquire(20.0) == (True, 0.0)


def test_fixed_window_admits_twice_its_limit_across_a_boundary() -> None:
    """The known weakness: limit at the end of one window and limit at the start of the next, 0.2 s apart."""
    fw = FixedWindow(10, 60.0)
    assert admitted(fw, 59.9, 10) == 10
    assert admitted(fw, 60.1, 10) == 10  # 20 calls within 0.2 s, twice the limit


def test_sliding_log_is_exact_and_retries_when_the_oldest_leaves() -> None:
    """limit 3 per 10 s: calls at 0, 4, 8; a call at 9 retries at 10, when the one at 0 leaves the window."""
    log = SlidingWindowLog(3, 10.0)
    for t in (0.0, 4.0, 8.0):
        assert log.try_acquire(t)[0]
    assert log.try_acquire(9.0) == (False, 1.0)
    assert log.try_acquire(10.0)[0]
    assert log.try_acquire(10.0) == (False, 4.0)  # next to leave: the call at 4


def test_sliding_log_multi_permit_retry_after() -> None:
    """Asking for 2 permits when 3 of 3 are used waits for the 2nd oldest to leave."""
    log = SlidingWindowLog(3, 10.0)
    for t in (0.0, 1.0, 2.0):
        log.try_acquire(t)
    assert log.try_acquire(5.0, 2) == (False, 6.0)
    assert log.try_acquire(11.0, 2)[0]


def test_sliding_counter_weights_the_previous_window() -> None:
    """limit 10 per 10 s: 10 calls in [0,10); at 15 the estimate is 10 × 0.5 = 5, so 5 more fit, then a wait."""
    sc = SlidingWindowCounter(10, 10.0)
    assert admitted(sc, 5.0, 10) == 10
    assert admitted(sc, 15.0, 10) == 5
    ok, retry = sc.try_acquire(15.0)
    # estimate 10 × (1 − e/10) + 5 + 1 ≤ 10 ⇔ e ≥ 6: at t = 16
    assert not ok and retry == pytest.approx(1.0)
    assert sc.try_acquire(16.0)[0]


def test_sliding_counter_retry_in_the_next_window() -> None:
    """When the current window alone is full, the retry lands in the next window once its share has decayed."""
    sc = SlidingWindowCounter(4, 10.0)
    assert admitted(sc, 2.0, 4) == 4
    ok, retry = sc.try_acquire(2.0)
    # next window [10, 20): 4 × (1 − e/10) + 1 ≤ 4 ⇔ e ≥ 2.5 → t = 12.5
    assert not ok and retry == pytest.approx(10.5)
    assert not sc.try_acquire(12.4)[0]
    assert sc.try_acquire(12.5)[0]


def test_token_bucket_bursts_then_refills_at_the_rate() -> None:
    """rate 2/s, burst 4: 4 at once, then the 5th retries in exactly 0.5 s; n > burst never fits."""
    tb = TokenBucket(2.0, 4)
    assert all(tb.try_acquire(0.0)[0] for _ in range(4))
    assert tb.try_acquire(0.0) == (False, 0.5)
    assert tb.try_acquire(0.5) == (True, 0.0)
    assert tb.try_acquire(0.5, 3) == (False, 1.5)
    assert tb.try_acquire(0.5, 5) == (False, math.inf)
    assert tb.tokens(100.0) == 4


def test_leaky_meter_is_the_token_bucket_seen_from_the_other_side() -> None:
    """capacity 3, leak 1/s: 3 fit, the 4th waits 1 s; after 2 s two more fit."""
    lb = LeakyBucketMeter(1.0, 3)
    assert all(lb.try_acquire(10.0)[0] for _ in range(3))
    assert lb.try_acquire(10.0) == (False, 1.0)
    assert lb.try_acquire(12.0, 2) == (True, 0.0)
    assert lb.try_acquire(12.0) == (False, 1.0)


def test_leaky_queue_spaces_requests_evenly_and_bounds_the_queue() -> None:
    """rate 4/s (0.25 s apart), 3 may wait: delays 0, .25, .5, .75, then refused until a place frees."""
    q = LeakyBucketQueue(4.0, 3)
    assert [q.try_acquire(0.0) for _ in range(4)] == [(True, 0.0), (True, 0.25), (True, 0.5), (True, 0.75)]
    assert q.waiting(0.0) == 4
    assert q.try_acquire(0.0) == (False, 0.25)
    assert q.try_acquire(0.25) == (True, 0.75)  # leaves at 1.0, right after the one at 0.75
    assert q.try_acquire(5.0) == (True, 0.0)  # idle: no delay
    assert q.waiting(5.0) == 1


def test_leaky_queue_without_a_queue_only_spaces() -> None:
    """max_queue 0: requests closer than 1/rate are refused, with the time to the next free slot."""
    q = LeakyBucketQueue(2.0, 0)
    assert q.try_acquire(1.0) == (True, 0.0)
    assert q.try_acquire(1.2) == (False, pytest.approx(0.3))
    assert q.try_acquire(1.5) == (True, 0.0)


def test_gcra_matches_redis_cell_throttle() -> None:
    """CL.THROTTLE key 15 30 60: limit 16, remaining 15, retry -1, reset 2 s; then 15 more, then retry 2 s."""
    g = GCRA.per(30, 60.0, max_burst=15)
    assert g.throttle(0.0) == Throttle(True, 16, 15, -1.0, 2.0)
    for _ in range(14):
        assert g.try_acquire(0.0)[0]
    assert g.throttle(0.0) == Throttle(True, 16, 0, -1.0, 32.0)
    assert g.throttle(0.0) == Throttle(False, 16, 0, 2.0, 32.0)
    assert g.try_acquire(1.999)[0] is False
    assert g.throttle(2.0) == Throttle(True, 16, 0, -1.0, 32.0)


def test_gcra_retry_after_is_exact_for_multi_permit_requests() -> None:
    """rate 1/s, burst 3 (4 at once): after 4, asking for 3 waits exactly 3 s; more than 4 never fits."""
    g = GCRA(1.0, max_burst=3)
    assert g.try_acquire(100.0, 4) == (True, 0.0)
    assert g.try_acquire(100.0, 3) == (False, 3.0)
    assert g.try_acquire(103.0, 3) == (True, 0.0)
    assert g.try_acquire(200.0, 5) == (False, math.inf)


def test_keyed_limiter_keeps_one_limiter_per_key_and_evicts_the_least_recently_used() -> None:
    """Keys are limited independently; past max_keys the least recently used key is evicted (and counted)."""
    kl: KeyedLimiter[str, FixedWindow] = KeyedLimiter(lambda: FixedWindow(1, 60.0), max_keys=2)
    assert kl.try_acquire("a", 0.0)[0] and kl.try_acquire("b", 0.0)[0]
    assert not kl.try_acquire("a", 1.0)[0]  # a is now the most recently used
    assert kl.try_acquire("c", 2.0)[0]
    assert "b" not in kl and "a" in kl and len(kl) == 2
    assert kl.evictions == 1


def test_keyed_limiter_sweep_drops_idle_keys_only() -> None:
    """sweep(now, idle) drops the keys unused for `idle` seconds and keeps the others."""
    kl: KeyedLimiter[str, TokenBucket] = KeyedLimiter(lambda: TokenBucket(1.0, 1), max_keys=10)
    kl.try_acquire("old", 0.0)
    kl.try_acquire("new", 50.0)
    assert kl.sweep(60.0, idle=30.0) == 1
    assert "old" not in kl and kl.get("new") is not None


@pytest.mark.parametrize(
    "make",
    [
        lambda: FixedWindow(1, 1.0),
        lambda: SlidingWindowLog(1, 1.0),
        lambda: SlidingWindowCounter(1, 1.0),
        lambda: TokenBucket(1.0, 1),
        lambda: LeakyBucketMeter(1.0, 1),
        lambda: LeakyBucketQueue(1.0, 1),
        lambda: GCRA(1.0),
    ],
)
def test_a_request_for_no_permits_is_a_caller_error(make: object) -> None:
    """n < 1 raises instead of being admitted for free."""
    with pytest.raises(ValueError, match="at least 1 permit"):
        make().try_acquire(0.0, 0)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FixedWindow(0, 1.0), "limit must be at least 1"),
        (lambda: SlidingWindowLog(3, 0.0), "window must be positive"),
        (lambda: TokenBucket(0.0, 1), "rate must be positive"),
        (lambda: LeakyBucketQueue(1.0, -1), "max_queue must be >= 0"),
        (lambda: GCRA(1.0, -1), "max_burst must be >= 0"),
    ],
)
def test_bad_settings_are_refused_by_name(make: object, message: str) -> None:
    """A bad setting is refused with a message naming it."""
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
