"""Sliding windows of call outcomes, the memory of a circuit breaker, and the judge of its thresholds.

Theory of operation
-------------------
A breaker decides on the *rates* of failed and slow calls over a recent window, as resilience4j does. Each
recorded call is one outcome code: bit 0 set = failed, bit 1 set = slow (duration ≥ `slow_call_duration`).
Two windows keep the running totals `calls`, `failures` and `slow` in O(1) per record, with no allocation:

- `CountWindow`: the last `size` calls, a ring of outcome codes. Once full, each new call pushes the oldest out
  and its contribution is subtracted from the totals.
- `TimeWindow`: the calls of the last `size` whole seconds, a ring of one bucket per second (resilience4j's
  time-based window). Recording at a later second first clears the buckets of the seconds that passed;
  `advance(now)` does the same for a reader that wants current totals without recording.

`success(now, duration)` and `failure(now, duration)` record a call and then judge the thresholds: once the window
holds `minimum_calls`, a failure rate ≥ `failure_pct` or a slow-call rate ≥ `slow_pct` calls `on_threshold(now)`
(the breaker's trip). They are the breaker's CLOSED-state handlers, called directly, so the closed path costs one
call. A fast success into a full count window cannot raise either rate, so it skips the judging.

Time only moves forward here: an outcome reported with a `now` earlier than the newest bucket is counted in the
newest bucket (a shell that reads one monotonic clock never does that). `now` is seconds, ≥ 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["FAILED", "SLOW", "CountWindow", "OutcomeWindow", "Thresholds", "TimeWindow"]

FAILED = 1  # outcome bit: the call failed
SLOW = 2  # outcome bit: the call took at least the slow-call duration


class Thresholds:
    """What a window judges against, and whom it tells."""

    __slots__ = ("failure_pct", "minimum_calls", "on_threshold", "slow_call_duration", "slow_pct")

    def __init__(
        self,
        minimum_calls: int = 1,
        failure_pct: float = 100.0,
        slow_pct: float = 100.0,
        slow_call_duration: float = float("inf"),
        on_threshold: Callable[[float], None] | None = None,
    ) -> None:
        self.minimum_calls = minimum_calls
        self.failure_pct = failure_pct
        self.slow_pct = slow_pct
        self.slow_call_duration = slow_call_duration
        self.on_threshold = on_threshold


class OutcomeWindow(Protocol):
    """What a breaker needs from a window."""

    calls: int
    failures: int
    slow: int

    def success(self, now: float, duration: float) -> None: ...
    def failure(self, now: float, duration: float) -> None: ...
    def record(self, now: float, outcome: int) -> None: ...
    def advance(self, now: float) -> None: ...
    def clear(self) -> None: ...


class _Judged:
    """The threshold check shared by both windows."""

    __slots__ = ("_fail_pct", "_min", "_on", "_slow_pct", "_slow_s", "calls", "failures", "slow")

    def __init__(self, t: Thresholds) -> None:
        self._min = t.minimum_calls
        self._fail_pct = t.failure_pct
        self._slow_pct = t.slow_pct
        self._slow_s = t.slow_call_duration
        self._on = t.on_threshold
        self.calls = self.failures = self.slow = 0

    def _judge(self, now: float) -> None:
        calls = self.calls
        if (
            calls >= self._min
            and (self.failures * 100.0 >= self._fail_pct * calls or self.slow * 100.0 >= self._slow_pct * calls)
            and self._on is not None
        ):
            self._on(now)


class CountWindow(_Judged):
    """The outcomes of the last `size` calls."""

    __slots__ = ("_i", "_ring", "size")

    def __init__(self, size: int, thresholds: Thresholds | None = None) -> None:
        if size < 1:
            raise ValueError(f"a count-based window needs at least 1 call, not {size}")
        super().__init__(thresholds or Thresholds())
        self.size = size
        self._ring = [0] * size
        self._i = 0

    def success(self, now: float, duration: float) -> None:
        """Record a successful call and judge the thresholds (skipped when no rate can have risen)."""
        if duration < self._slow_s and self.calls == self.size:
            i = self._i
            old = self._ring[i]
            if old:
                self._ring[i] = 0
                if old & FAILED:
                    self.failures -= 1
                if old & SLOW:
                    self.slow -= 1
            i += 1
            self._i = 0 if i == self.size else i
            return
        self.record(now, SLOW if duration >= self._slow_s else 0)
        self._judge(now)

    def failure(self, now: float, duration: float) -> None:
        """Record a failed call and judge the thresholds."""
        self.record(now, (FAILED | SLOW) if duration >= self._slow_s else FAILED)
        self._judge(now)

    def record(self, now: float, outcome: int) -> None:
        """Count one call with `outcome` (FAILED/SLOW bits), without judging; `now` is unused here."""
        i = self._i
        ring = self._ring
        if self.calls == self.size:
            old = ring[i]
            if old & FAILED:
                self.failures -= 1
            if old & SLOW:
                self.slow -= 1
        else:
            self.calls += 1
        ring[i] = outcome
        if outcome & FAILED:
            self.failures += 1
        if outcome & SLOW:
            self.slow += 1
        i += 1
        self._i = 0 if i == self.size else i

    def advance(self, now: float) -> None:
        """A count window does not age with time."""

    def clear(self) -> None:
        """Forget every call."""
        self._ring = [0] * self.size
        self._i = self.calls = self.failures = self.slow = 0


class TimeWindow(_Judged):
    """The outcomes of the calls in the last `size` whole seconds, one bucket per second."""

    __slots__ = ("_calls", "_fail", "_head", "_slow", "size")

    def __init__(self, size: int, thresholds: Thresholds | None = None) -> None:
        if size < 1:
            raise ValueError(f"a time-based window needs at least 1 second, not {size}")
        super().__init__(thresholds or Thresholds())
        self.size = size
        self._calls = [0] * size
        self._fail = [0] * size
        self._slow = [0] * size
        self._head = 0  # the absolute second of the newest bucket

    def success(self, now: float, duration: float) -> None:
        """Record a successful call and judge the thresholds."""
        self.record(now, SLOW if duration >= self._slow_s else 0)
        self._judge(now)

    def failure(self, now: float, duration: float) -> None:
        """Record a failed call and judge the thresholds."""
        self.record(now, (FAILED | SLOW) if duration >= self._slow_s else FAILED)
        self._judge(now)

    def record(self, now: float, outcome: int) -> None:
        """Count one call at `now` with `outcome` (FAILED/SLOW bits), without judging."""
        sec = int(now)
        if sec > self._head:
            self._roll(sec)
        j = self._head % self.size
        self._calls[j] += 1
        self.calls += 1
        if outcome & FAILED:
            self._fail[j] += 1
            self.failures += 1
        if outcome & SLOW:
            self._slow[j] += 1
            self.slow += 1

    def advance(self, now: float) -> None:
        """Drop the buckets of seconds that left the window by `now`."""
        sec = int(now)
        if sec > self._head:
            self._roll(sec)

    def clear(self) -> None:
        """Forget every call (the window keeps its position in time)."""
        n = self.size
        self._calls, self._fail, self._slow = [0] * n, [0] * n, [0] * n
        self.calls = self.failures = self.slow = 0

    def _roll(self, sec: int) -> None:
        n = self.size
        steps = min(sec - self._head, n)
        for k in range(1, steps + 1):
            j = (self._head + k) % n
            self.calls -= self._calls[j]
            self.failures -= self._fail[j]
            self.slow -= self._slow[j]
            self._calls[j] = self._fail[j] = self._slow[j] = 0
        self._head = sec
