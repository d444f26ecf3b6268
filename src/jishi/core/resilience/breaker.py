"""Circuit breaker with resilience4j semantics, and a half-open deadline so it can never be stuck.

Theory of operation
-------------------
The caller asks `try_acquire(now)` for a permit, makes the call *without any lock held*, then reports
`on_success(now, duration)` or `on_failure(now, duration)` (or `release(now)` when the outcome is to be
ignored). Which errors count as failures is the caller's business; the breaker sees failed/succeeded and how
long the call took. A call is *slow* when `duration >= slow_call_duration`.

    CLOSED        every call is permitted and recorded in a sliding window (count- or time-based). Once the window
                  holds at least `minimum_calls`, a failure rate ≥ `failure_rate_threshold` % or a slow-call rate
                  ≥ `slow_call_rate_threshold` % trips it                                        → OPEN
    OPEN          no call is permitted for the wait; the first `try_acquire` (or `poll`) after it → HALF_OPEN.
                  The wait is `wait_in_open × open_backoff_multiplier^(k-1)` capped at `max_wait_in_open`, for the
                  k-th consecutive open since the breaker was last CLOSED (multiplier 1 = a fixed wait).
    HALF_OPEN     exactly `permitted_calls_in_half_open` probe calls are permitted. When all have reported, the
                  same thresholds over just those calls decide                       → CLOSED (window cleared) or OPEN.
                  If they have not all reported by `max_wait_in_half_open`                        → OPEN,
                  so a probe whose outcome is lost (a cancelled task) cannot wedge the breaker.
    DISABLED      always permits, records nothing.           ┐
    FORCED_OPEN   never permits, records nothing.            ├ entered and left only by the operator
    METRICS_ONLY  always permits, records, never trips.      ┘

Every transition goes through the table `TRANSITIONS` (state, trigger) → state in `breaker_states`; a trigger
the current state does not allow raises `IllegalTransition` and changes nothing. Each transition appends a
`StateChange(old, new, at, reason)` that the shell drains with `drain_events()` to log and publish.

Outcomes reported while OPEN, FORCED_OPEN or DISABLED are ignored. An outcome of a call that was permitted in an
earlier state but reports during HALF_OPEN counts as a probe result (as in resilience4j).

Speed: in CLOSED, `try_acquire` is one flag test and `on_success`/`on_failure` *are* the window's handlers
(re-bound at each state change), which update a ring in place and judge the rates only when they can have risen —
no allocation, no lock, one call each.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from jishi.core.resilience.breaker_states import (
    TRANSITIONS,
    BreakerState,
    BreakerTrigger,
    IllegalTransition,
    StateChange,
)
from jishi.core.resilience.outcomes import FAILED, CountWindow, OutcomeWindow, Thresholds, TimeWindow

__all__ = ["Breaker", "BreakerConfig", "BreakerMetrics", "WindowType"]

_S, _T = BreakerState, BreakerTrigger

MAX_EVENTS = 1024  # undrained state changes kept; older ones are dropped and counted in `events_dropped`


class WindowType(enum.Enum):
    COUNT = "count"  # the last `window_size` calls
    TIME = "time"  # the calls of the last `window_size` seconds


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Breaker settings; defaults are resilience4j's, plus a finite half-open deadline."""

    window_type: WindowType = WindowType.COUNT
    window_size: int = 100  # calls (COUNT) or seconds (TIME)
    minimum_calls: int = 100  # calls in the window before any rate is judged (capped at a COUNT window's size)
    failure_rate_threshold: float = 50.0  # percent
    slow_call_rate_threshold: float = 100.0  # percent
    slow_call_duration: float = 60.0  # seconds
    wait_in_open: float = 60.0  # seconds
    open_backoff_multiplier: float = 1.0  # 1 = fixed wait; > 1 grows the wait on each consecutive open
    max_wait_in_open: float | None = None  # cap of the grown wait; None = no cap beyond the float range
    permitted_calls_in_half_open: int = 10
    max_wait_in_half_open: float = 60.0  # seconds; must be > 0, so HALF_OPEN always ends

    def __post_init__(self) -> None:
        def need(ok: bool, field: str, what: str) -> None:
            if not ok:
                raise ValueError(f"circuit breaker {field} {what}, not {getattr(self, field)!r}")

        need(self.window_size >= 1, "window_size", "must be at least 1")
        need(self.minimum_calls >= 1, "minimum_calls", "must be at least 1")
        need(0 < self.failure_rate_threshold <= 100, "failure_rate_threshold", "must be a percent in (0, 100]")
        need(0 < self.slow_call_rate_threshold <= 100, "slow_call_rate_threshold", "must be a percent in (0, 100]")
        need(self.slow_call_duration > 0, "slow_call_duration", "must be positive seconds")
        need(self.wait_in_open > 0, "wait_in_open", "must be positive seconds")
        need(self.open_backoff_multiplier >= 1, "open_backoff_multiplier", "must be at least 1")
        need(
            self.max_wait_in_open is None or self.max_wait_in_open >= self.wait_in_open,
            "max_wait_in_open",
            "must be at least wait_in_open",
        )
        need(self.permitted_calls_in_half_open >= 1, "permitted_calls_in_half_open", "must be at least 1")
        need(self.max_wait_in_half_open > 0, "max_wait_in_half_open", "must be positive seconds (never stuck)")


class BreakerMetrics(NamedTuple):
    state: BreakerState
    calls: int  # calls in the window (in HALF_OPEN: probe results so far)
    failed_calls: int
    slow_calls: int
    failure_rate: float  # percent; -1 while fewer than minimum_calls (HALF_OPEN: permitted calls) are known
    slow_call_rate: float  # percent; -1 likewise
    not_permitted: int  # calls refused since the breaker was made


class Breaker:
    """One circuit breaker. Not thread-safe by design: one event loop feeds it.

    The call path is `try_acquire(now) -> bool`, then exactly one of `on_success(now, duration)`,
    `on_failure(now, duration)` or `release(now)`. `on_success`/`on_failure` are re-bound on every state change to
    the handler of the new state (the window's own in CLOSED and METRICS_ONLY), so the closed path is one call.
    """

    __slots__ = (
        "_admit_all",
        "_events",
        "_fail_pct",
        "_ho_calls",
        "_ho_deadline",
        "_ho_failures",
        "_ho_permits",
        "_ho_slow",
        "_open_until",
        "_opened_at",
        "_opens",
        "_slow_pct",
        "_slow_s",
        "_window",
        "config",
        "events_dropped",
        "not_permitted",
        "on_failure",
        "on_success",
        "state",
    )

    on_success: Callable[[float, float], None]
    """The permitted call succeeded after `duration` seconds: `on_success(now, duration)`."""
    on_failure: Callable[[float, float], None]
    """The permitted call failed after `duration` seconds: `on_failure(now, duration)`."""

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = c = config or BreakerConfig()
        minimum = min(c.minimum_calls, c.window_size) if c.window_type is WindowType.COUNT else c.minimum_calls
        thresholds = Thresholds(
            minimum, c.failure_rate_threshold, c.slow_call_rate_threshold, c.slow_call_duration, self._judge
        )
        window: OutcomeWindow
        if c.window_type is WindowType.COUNT:
            window = CountWindow(c.window_size, thresholds)
        else:
            window = TimeWindow(c.window_size, thresholds)
        self._window = window
        self._fail_pct = c.failure_rate_threshold
        self._slow_pct = c.slow_call_rate_threshold
        self._slow_s = c.slow_call_duration
        self.state = BreakerState.CLOSED
        self._admit_all = True  # CLOSED, DISABLED, METRICS_ONLY: every call is permitted
        self._opens = 0  # consecutive opens since last CLOSED
        self._open_until = self._opened_at = 0.0
        self._ho_permits = self._ho_calls = self._ho_failures = self._ho_slow = 0
        self._ho_deadline = 0.0
        self._events: list[StateChange] = []
        self.events_dropped = 0
        self.not_permitted = 0
        self._bind()

    # -- the call path -------------------------------------------------------------------------------------------

    def try_acquire(self, now: float) -> bool:
        """May a call go ahead at `now`? True hands out a permit the caller must settle with one report."""
        if self._admit_all:
            return True
        return self._acquire_slow(now)

    def release(self, now: float) -> None:
        """The permitted call's outcome is ignored: give a half-open permit back, record nothing."""
        if self.state is _HALF_OPEN and self._ho_permits + self._ho_calls < self.config.permitted_calls_in_half_open:
            self._ho_permits += 1

    def poll(self, now: float) -> BreakerState:
        """Apply the transitions time alone causes (OPEN wait over, half-open deadline); returns the state."""
        if self.state is _OPEN and now >= self._open_until:
            self._fire(_T.WAIT_ELAPSED, now, f"waited {self._open_until - self._opened_at:g}s in open")
        elif self.state is _HALF_OPEN and now >= self._ho_deadline:
            self._half_open_timeout(now)
        return self.state

    def next_deadline(self) -> float | None:
        """When `poll` will next change the state by itself (None: only calls or the operator will)."""
        if self.state is _OPEN:
            return self._open_until
        if self.state is _HALF_OPEN:
            return self._ho_deadline
        return None

    # -- operator actions ----------------------------------------------------------------------------------------

    def close(self, now: float) -> None:
        """Reset to CLOSED with an empty window and no backoff."""
        self._fire(_T.CLOSE, now, "closed by the operator")

    def open(self, now: float) -> None:
        """Open now, as if the thresholds had tripped (the OPEN wait then applies)."""
        self._fire(_T.OPEN, now, "opened by the operator")

    def half_open(self, now: float) -> None:
        """End the OPEN wait early and start probing. Only from OPEN."""
        self._fire(_T.HALF_OPEN, now, "half-opened by the operator")

    def disable(self, now: float) -> None:
        """Permit everything and record nothing until another operator action."""
        self._fire(_T.DISABLE, now, "disabled by the operator")

    def force_open(self, now: float) -> None:
        """Refuse everything until another operator action."""
        self._fire(_T.FORCE_OPEN, now, "forced open by the operator")

    def metrics_only(self, now: float) -> None:
        """Permit everything, keep recording, never trip."""
        self._fire(_T.METRICS_ONLY, now, "set to metrics-only by the operator")

    # -- reading -------------------------------------------------------------------------------------------------

    def drain_events(self) -> list[StateChange]:
        """The state changes since the last drain, oldest first."""
        events, self._events = self._events, []
        return events

    def metrics(self, now: float) -> BreakerMetrics:
        """The current counts and rates (the window is first aged to `now`)."""
        if self.state is _HALF_OPEN:
            calls, failed, slow = self._ho_calls, self._ho_failures, self._ho_slow
            needed = self.config.permitted_calls_in_half_open
        else:
            w = self._window
            w.advance(now)
            calls, failed, slow = w.calls, w.failures, w.slow
            needed = self._window_minimum()
        known = calls >= needed and calls > 0
        return BreakerMetrics(
            self.state,
            calls,
            failed,
            slow,
            failed * 100.0 / calls if known else -1.0,
            slow * 100.0 / calls if known else -1.0,
            self.not_permitted,
        )

    def open_wait(self, k: int) -> float:
        """The OPEN wait of the k-th consecutive open (k from 1)."""
        c = self.config
        if c.open_backoff_multiplier == 1.0:
            return c.wait_in_open
        cap = c.max_wait_in_open if c.max_wait_in_open is not None else float("inf")
        try:
            return min(cap, c.wait_in_open * c.open_backoff_multiplier ** (k - 1))
        except OverflowError:
            return cap

    # -- internals -----------------------------------------------------------------------------------------------

    def _window_minimum(self) -> int:
        c = self.config
        return min(c.minimum_calls, c.window_size) if c.window_type is WindowType.COUNT else c.minimum_calls

    def _acquire_slow(self, now: float) -> bool:
        state = self.state
        if state is _OPEN:
            if now < self._open_until:
                self.not_permitted += 1
                return False
            self._fire(_T.WAIT_ELAPSED, now, f"waited {self._open_until - self._opened_at:g}s in open")
            state = self.state
        if state is _HALF_OPEN:
            if now >= self._ho_deadline:
                self._half_open_timeout(now)
            elif self._ho_permits > 0:
                self._ho_permits -= 1
                return True
        self.not_permitted += 1
        return False

    def _bind(self) -> None:
        state = self.state
        if state is _CLOSED or state is _S.METRICS_ONLY:
            self.on_success, self.on_failure = self._window.success, self._window.failure
        elif state is _HALF_OPEN:
            self.on_success, self.on_failure = self._probe_success, self._probe_failure
        else:
            self.on_success = self.on_failure = self._ignore

    def _ignore(self, now: float, duration: float) -> None:
        """OPEN, FORCED_OPEN, DISABLED: outcomes are not recorded."""

    def _probe_success(self, now: float, duration: float) -> None:
        self._probe(now, 0, duration)

    def _probe_failure(self, now: float, duration: float) -> None:
        self._probe(now, FAILED, duration)

    def _judge(self, now: float) -> None:
        """The window found a rate over its threshold: trip, unless the breaker only keeps metrics."""
        if self.state is not _CLOSED:
            return
        w = self._window
        calls = w.calls
        if w.failures * 100.0 >= self._fail_pct * calls:
            rate = w.failures * 100.0 / calls
            self._fire(_T.TRIP, now, f"failure rate {rate:.1f}% >= {self._fail_pct:g}% over {calls} calls")
        elif w.slow * 100.0 >= self._slow_pct * calls:
            rate = w.slow * 100.0 / calls
            self._fire(_T.TRIP, now, f"slow-call rate {rate:.1f}% >= {self._slow_pct:g}% over {calls} calls")

    def _probe(self, now: float, failed: int, duration: float) -> None:
        if now >= self._ho_deadline:
            self._half_open_timeout(now)
            return
        self._ho_calls += 1
        self._ho_failures += failed
        if duration >= self._slow_s:
            self._ho_slow += 1
        n = self.config.permitted_calls_in_half_open
        if self._ho_calls < n:
            return
        fail_rate = self._ho_failures * 100.0 / n
        slow_rate = self._ho_slow * 100.0 / n
        if fail_rate >= self._fail_pct:
            self._fire(_T.PROBES_FAILED, now, f"half-open failure rate {fail_rate:.1f}% >= {self._fail_pct:g}%")
        elif slow_rate >= self._slow_pct:
            self._fire(_T.PROBES_FAILED, now, f"half-open slow-call rate {slow_rate:.1f}% >= {self._slow_pct:g}%")
        else:
            self._fire(_T.PROBES_PASSED, now, f"{n} half-open calls under the thresholds")

    def _half_open_timeout(self, now: float) -> None:
        c = self.config
        self._fire(
            _T.HALF_OPEN_TIMEOUT,
            now,
            f"{self._ho_calls} of {c.permitted_calls_in_half_open} half-open calls reported"
            f" within {c.max_wait_in_half_open:g}s",
        )

    def _fire(self, trigger: BreakerTrigger, now: float, reason: str) -> None:
        old = self.state
        try:
            new = TRANSITIONS[(old, trigger)]
        except KeyError:
            raise IllegalTransition(old, trigger) from None
        self.state = new
        self._admit_all = new is _CLOSED or new is _S.DISABLED or new is _S.METRICS_ONLY
        self._bind()
        if new is _CLOSED or new is _S.METRICS_ONLY or new is _S.DISABLED:
            self._window.clear()
            if new is _CLOSED:
                self._opens = 0
        elif new is _OPEN:
            self._opens += 1
            self._opened_at = now
            self._open_until = now + self.open_wait(self._opens)
        elif new is _HALF_OPEN:
            self._ho_permits = self.config.permitted_calls_in_half_open
            self._ho_calls = self._ho_failures = self._ho_slow = 0
            self._ho_deadline = now + self.config.max_wait_in_half_open
        self._events.append(StateChange(old, new, now, reason))
        if len(self._events) > MAX_EVENTS:
            del self._events[0]
            self.events_dropped += 1


_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
