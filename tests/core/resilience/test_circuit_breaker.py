"""Circuit breaker: exact-time scenarios through every state, thresholds, backoff, deadlines and operator states."""

from __future__ import annotations

import pytest

from jishi.core.resilience import (
    Breaker,
    BreakerConfig,
    BreakerState,
    IllegalTransition,
    StateChange,
    WindowType,
)

S = BreakerState


def small(**kw: object) -> Breaker:
    """A breaker over the last 4 calls, judged from 4 calls, 50 % failures, 10 s open, 2 probes, 5 s half-open."""
    cfg: dict[str, object] = dict(
        window_size=4,
        minimum_calls=4,
        failure_rate_threshold=50.0,
        slow_call_duration=1.0,
        wait_in_open=10.0,
        permitted_calls_in_half_open=2,
        max_wait_in_half_open=5.0,
    )
    cfg.update(kw)
    return Breaker(BreakerConfig(**cfg))  # type: ignore[arg-type]


def call(b: Breaker, now: float, ok: bool, duration: float = 0.01) -> bool:
    """One protected call at `now`: acquire, then report; returns whether it was permitted."""
    if not b.try_acquire(now):
        return False
    (b.on_success if ok else b.on_failure)(now, duration)
    return True


def trip(b: Breaker, now: float) -> None:
    """Two failures and two successes at `now`: exactly 50 % over 4 calls."""
    for ok in (True, False, True, False):
        call(b, now, ok)


def test_closed_trips_at_the_failure_rate_once_minimum_calls_are_in() -> None:
    """Three failures in three calls do not trip before the minimum of 4; the 4th call at 50 % trips it."""
    b = small()
    for _ in range(3):
        call(b, 1.0, False)
    assert b.state is S.CLOSED
    call(b, 2.0, True)
    assert b.state is S.OPEN
    [change] = b.drain_events()
    assert change == StateChange(S.CLOSED, S.OPEN, 2.0, "failure rate 75.0% >= 50% over 4 calls")
    assert b.drain_events() == []


def test_under_the_threshold_stays_closed() -> None:
    """One failure in four calls (25 %) keeps the breaker closed, and the window slides."""
    b = small()
    for ok in (True, True, True, False, True, True, True, False):
        call(b, 0.0, ok)
    assert b.state is S.CLOSED
    m = b.metrics(0.0)
    assert (m.calls, m.failed_calls, m.failure_rate) == (4, 1, 25.0)


def test_open_refuses_until_the_wait_then_half_opens() -> None:
    """OPEN refuses calls for exactly wait_in_open; the first acquire at the end of the wait gets a probe permit."""
    b = small()
    trip(b, 100.0)
    assert not b.try_acquire(109.999)
    assert b.not_permitted == 1
    assert b.try_acquire(110.0)
    assert b.state is S.HALF_OPEN
    assert [(e.old, e.new, e.at) for e in b.drain_events()][-1] == (S.OPEN, S.HALF_OPEN, 110.0)


def test_half_open_permits_a_fixed_number_of_probes_and_closes_when_they_pass() -> None:
    """Exactly 2 probes are permitted; both succeed → CLOSED with an empty window."""
    b = small()
    trip(b, 0.0)
    assert b.try_acquire(10.0) and b.try_acquire(10.0)
    assert not b.try_acquire(10.0)
    b.on_success(10.5, 0.01)
    assert b.state is S.HALF_OPEN
    b.on_success(10.6, 0.01)
    assert b.state is S.CLOSED
    assert b.metrics(10.6).calls == 0
    assert [e.new for e in b.drain_events()] == [S.OPEN, S.HALF_OPEN, S.CLOSED]


def test_half_open_reopens_when_probes_fail() -> None:
    """One failed probe out of two is 50 % → back to OPEN, for another full wait."""
    b = small()
    trip(b, 0.0)
    call(b, 10.0, True)
    call(b, 10.0, False)
    assert b.state is S.OPEN
    assert not b.try_acquire(19.99)
    assert b.try_acquire(20.0)


def test_half_open_deadline_reopens_a_breaker_whose_probes_never_report() -> None:
    """A probe whose outcome is lost cannot wedge HALF_OPEN: after max_wait_in_half_open it is OPEN again."""
    b = small()
    trip(b, 0.0)
    assert b.try_acquire(10.0) and b.try_acquire(10.0)  # both probes vanish
    assert not b.try_acquire(14.99)
    assert b.state is S.HALF_OPEN
    assert not b.try_acquire(15.0)
    assert b.state is S.OPEN
    change = b.drain_events()[-1]
    assert (change.old, change.new, change.at) == (S.HALF_OPEN, S.OPEN, 15.0)
    assert change.reason == "0 of 2 half-open calls reported within 5s"
    assert b.try_acquire(25.0) and b.state is S.HALF_OPEN


def test_poll_applies_time_transitions_without_a_call() -> None:
    """poll() moves OPEN → HALF_OPEN at the end of the wait and HALF_OPEN → OPEN at the deadline."""
    b = small()
    trip(b, 0.0)
    assert b.next_deadline() == 10.0
    assert b.poll(9.0) is S.OPEN
    assert b.poll(10.0) is S.HALF_OPEN
    assert b.next_deadline() == 15.0
    assert b.poll(15.0) is S.OPEN
    assert b.next_deadline() == 25.0


def test_late_probe_result_after_the_deadline_reopens_instead_of_counting() -> None:
    """A probe that reports after the half-open deadline moves the breaker to OPEN; it does not close it."""
    b = small(permitted_calls_in_half_open=1)
    trip(b, 0.0)
    assert b.try_acquire(10.0)
    b.on_success(15.5, 5.5)
    assert b.state is S.OPEN


def test_open_wait_backs_off_exponentially_across_consecutive_opens_and_resets_on_close() -> None:
    """Waits of 10, 20, 40 s (multiplier 2) capped at 60 s, back to 10 s once the breaker has closed."""
    b = small(open_backoff_multiplier=2.0, max_wait_in_open=60.0)
    trip(b, 0.0)
    t, waits = 0.0, []
    for _ in range(4):
        assert b.state is S.OPEN
        until = b.next_deadline()
        assert until is not None
        waits.append(until - t)
        t = until
        call(b, t, False)  # the probe fails
        call(b, t, True)
    assert waits == [10.0, 20.0, 40.0, 60.0]
    call(b, t + 60.0, True)
    call(b, t + 60.0, True)
    assert b.state is S.CLOSED
    trip(b, 1000.0)
    assert b.next_deadline() == 1010.0


def test_slow_calls_trip_on_the_slow_call_rate() -> None:
    """Successful but slow calls (duration ≥ slow_call_duration) trip a breaker with a slow-call threshold."""
    b = small(slow_call_rate_threshold=75.0)
    for d in (1.0, 2.0, 0.5):
        call(b, 0.0, True, d)
    assert b.state is S.CLOSED
    call(b, 0.0, True, 1.0)
    assert b.state is S.OPEN
    assert b.drain_events()[0].reason == "slow-call rate 75.0% >= 75% over 4 calls"


def test_slow_half_open_probes_reopen() -> None:
    """Half-open probes that succeed slowly are judged by the slow-call rate too."""
    b = small(slow_call_rate_threshold=50.0)
    trip(b, 0.0)
    call(b, 10.0, True, 3.0)
    call(b, 10.0, True, 0.1)
    assert b.state is S.OPEN


def test_time_window_forgets_calls_older_than_its_seconds() -> None:
    """A 10 s time window: failures 10 s ago no longer count; enough recent failures still trip it."""
    b = small(window_type=WindowType.TIME, window_size=10, minimum_calls=4)
    for _ in range(3):
        call(b, 0.5, False)
    for _ in range(3):
        call(b, 10.5, True)  # second 0 has left the window [1, 10]
    assert b.state is S.CLOSED
    assert b.metrics(10.5).calls == 3
    call(b, 11.0, False)
    call(b, 11.0, False)
    call(b, 11.0, False)
    assert b.state is S.OPEN  # 3 failures in 6 calls


def test_minimum_calls_is_capped_at_a_count_window_size() -> None:
    """minimum_calls larger than the count window would never be reached; it is judged at the window size."""
    b = small(window_size=2, minimum_calls=100)
    call(b, 0.0, False)
    call(b, 0.0, False)
    assert b.state is S.OPEN


def test_release_returns_a_half_open_permit() -> None:
    """A probe whose outcome is ignored gives its permit back for another probe."""
    b = small(permitted_calls_in_half_open=1)
    trip(b, 0.0)
    assert b.try_acquire(10.0)
    assert not b.try_acquire(10.0)
    b.release(10.0)
    assert b.try_acquire(10.1)
    b.release(10.1)
    b.release(10.1)  # more releases than permits change nothing
    assert b.try_acquire(10.2)
    assert not b.try_acquire(10.2)


def test_forced_open_refuses_and_disabled_permits_without_recording() -> None:
    """FORCED_OPEN refuses every call whatever the time; DISABLED permits all and records nothing."""
    b = small()
    b.force_open(0.0)
    assert not any(b.try_acquire(t) for t in (0.0, 100.0, 1e6))
    b.disable(1.0)
    for _ in range(10):
        call(b, 2.0, False)
    assert b.state is S.DISABLED
    assert b.metrics(2.0).calls == 0
    b.close(3.0)
    assert [e.new for e in b.drain_events()] == [S.FORCED_OPEN, S.DISABLED, S.CLOSED]


def test_metrics_only_records_but_never_trips() -> None:
    """METRICS_ONLY permits every call and keeps the rates, even at 100 % failures."""
    b = small()
    b.metrics_only(0.0)
    for _ in range(8):
        assert call(b, 1.0, False)
    m = b.metrics(1.0)
    assert (m.state, m.calls, m.failure_rate) == (S.METRICS_ONLY, 4, 100.0)


def test_operator_open_and_half_open() -> None:
    """The operator can open a closed breaker and end an OPEN wait early."""
    b = small()
    b.open(0.0)
    assert not b.try_acquire(1.0)
    b.half_open(2.0)
    assert b.state is S.HALF_OPEN
    assert b.try_acquire(2.0)


def test_illegal_transition_raises_and_changes_nothing() -> None:
    """Half-opening a CLOSED breaker is not in the table: it raises and the breaker stays CLOSED, no event."""
    b = small()
    with pytest.raises(IllegalTransition, match="'closed' cannot take 'half_open'"):
        b.half_open(0.0)
    assert b.state is S.CLOSED
    assert b.drain_events() == []
    assert b.try_acquire(0.0)


def test_outcomes_reported_while_open_are_ignored() -> None:
    """Calls permitted before the trip that report during OPEN do not change the state or the counts."""
    b = small()
    trip(b, 0.0)
    b.on_success(1.0, 0.01)
    b.on_failure(1.0, 0.01)
    assert b.state is S.OPEN


def test_metrics_report_minus_one_before_minimum_calls() -> None:
    """Rates are -1 until minimum_calls are in the window (resilience4j convention)."""
    b = small()
    call(b, 0.0, False)
    m = b.metrics(0.0)
    assert (m.calls, m.failed_calls, m.failure_rate, m.slow_call_rate) == (1, 1, -1.0, -1.0)


def test_undrained_events_are_bounded() -> None:
    """A shell that never drains does not grow memory without bound; dropped events are counted."""
    b = small()
    for i in range(1100):
        b.force_open(float(i))
    assert len(b.drain_events()) == 1024
    assert b.events_dropped == 1100 - 1024


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window_size", 0, "window_size must be at least 1"),
        ("failure_rate_threshold", 0.0, r"failure_rate_threshold must be a percent in \(0, 100\]"),
        ("max_wait_in_half_open", 0.0, r"max_wait_in_half_open must be positive seconds \(never stuck\)"),
        ("max_wait_in_open", 1.0, "max_wait_in_open must be at least wait_in_open"),
        ("open_backoff_multiplier", 0.5, "open_backoff_multiplier must be at least 1"),
    ],
)
def test_config_errors_name_the_setting(field: str, value: object, message: str) -> None:
    """A bad setting is refused with a message naming it and the rule."""
    with pytest.raises(ValueError, match=message):
        BreakerConfig(**{field: value})  # type: ignore[arg-type]
