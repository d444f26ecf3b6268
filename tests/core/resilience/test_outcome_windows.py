"""Breaker outcome windows: totals against a naive recount, per-second ageing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jishi.core.resilience.outcomes import FAILED, SLOW, CountWindow, Thresholds, TimeWindow

outcomes = st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0, FAILED, SLOW, FAILED | SLOW])), max_size=200)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10), outcomes)
def test_count_window_totals_equal_a_recount_of_the_last_calls(size: int, calls: list[tuple[int, int]]) -> None:
    """calls/failures/slow always equal a recount of the last `size` outcomes."""
    w, seen = CountWindow(size), []
    for _, outcome in calls:
        w.record(0.0, outcome)
        seen.append(outcome)
        last = seen[-size:]
        assert (w.calls, w.failures, w.slow) == (
            len(last),
            sum(1 for o in last if o & FAILED),
            sum(1 for o in last if o & SLOW),
        )


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), outcomes)
def test_time_window_totals_equal_a_recount_of_the_last_seconds(seconds: int, calls: list[tuple[int, int]]) -> None:
    """Totals equal a recount of the outcomes whose whole second is within the last `seconds` seconds."""
    w, seen, now = TimeWindow(seconds), [], 0.0
    for step, outcome in calls:
        now += step * 0.7
        w.record(now, outcome)
        seen.append((int(now), outcome))
        last = [o for s, o in seen if s > int(now) - seconds]
        assert (w.calls, w.failures, w.slow) == (
            len(last),
            sum(1 for o in last if o & FAILED),
            sum(1 for o in last if o & SLOW),
        )


def test_time_window_advance_ages_without_recording() -> None:
    """advance(now) drops seconds that left the window, so a reader sees current totals."""
    w = TimeWindow(3)
    w.record(0.5, FAILED)
    w.record(2.5, 0)
    w.advance(3.0)
    assert (w.calls, w.failures) == (1, 0)
    w.advance(100.0)
    assert w.calls == 0


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 8),
    st.integers(1, 8),
    st.sampled_from([25.0, 50.0, 100.0]),
    st.lists(st.tuples(st.booleans(), st.sampled_from([0.1, 5.0])), max_size=120),
)
def test_count_window_judges_every_crossing_of_a_threshold(
    size: int, minimum: int, pct: float, calls: list[tuple[bool, float]]
) -> None:
    """success()/failure() keep exact totals and call on_threshold whenever a recount is at or over a threshold."""
    fired: list[int] = []
    w = CountWindow(size, Thresholds(minimum, pct, pct, 1.0, lambda now: fired.append(len(seen))))
    seen: list[int] = []
    for ok, duration in calls:
        seen.append((0 if ok else FAILED) | (SLOW if duration >= 1.0 else 0))
        (w.success if ok else w.failure)(0.0, duration)
        last = seen[-size:]
        failures = sum(1 for o in last if o & FAILED)
        slow = sum(1 for o in last if o & SLOW)
        assert (w.calls, w.failures, w.slow) == (len(last), failures, slow)
        over = len(last) >= minimum and (failures * 100 >= pct * len(last) or slow * 100 >= pct * len(last))
        skippable = ok and duration < 1.0 and len(seen) > size  # a fast success into a full window
        if over and not skippable:
            assert fired and fired[-1] == len(seen)
        if not over:
            assert not fired or fired[-1] != len(seen)
