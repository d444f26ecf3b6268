"""Sliding windows of call outcomes, the memory of a circuit breaker.

Theory of operation
-------------------
A breaker decides on the *rates* of failed and slow calls over a recent window, as resilience4j does. Each
recorded call is one outcome code: bit 0 set = failed, bit 1 set = slow (duration ≥ the slow-call threshold).
Two windows keep the running totals `calls`, `failures` and `slow` in O(1) per record, with no allocation:

- `CountWindow(size)`: the last `size` calls, a ring of outcome codes. Once full, each new call pushes the
  oldest out and its contribution is subtracted from the totals.
- `TimeWindow(seconds)`: the calls of the last `seconds` whole seconds, a ring of one bucket per second
  (resilience4j's time-based window). Recording at a later second first clears the buckets of the seconds that
  passed; `advance(now)` does the same for a reader that wants current totals without recording.

Time only moves forward here: an outcome reported with a `now` earlier than the newest bucket is counted in the
newest bucket (a shell that reads one monotonic clock never does that). `now` is seconds, ≥ 0.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["FAILED", "SLOW", "CountWindow", "OutcomeWindow", "TimeWindow"]

FAILED = 1  # outcome bit: the call failed
SLOW = 2  # outcome bit: the call took at least the slow-call duration


class OutcomeWindow(Protocol):
    """What a breaker needs from a window: record outcomes, read totals."""

    calls: int
    failures: int
    slow: int

    def record(self, now: float, outcome: int) -> None: ...
    def advance(self, now: float) -> None: ...
    def clear(self) -> None: ...


class CountWindow:
    """The outcomes of the last `size` calls."""

    __slots__ = ("_i", "_ring", "calls", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a count-based window needs at least 1 call, not {size}")
        self.size = size
        self._ring = [0] * size
        self._i = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, now: float, outcome: int) -> None:
        """Count one call with `outcome` (FAILED/SLOW bits); `now` is unused by a count window."""
        i = self._i
        ring = self._ring
        if self.calls == self.size:
            old = ring[i]
            if old:
                if old & FAILED:
                    self.failures -= 1
                if old & SLOW:
                    self.slow -= 1
        else:
            self.calls += 1
        ring[i] = outcome
        if outcome:
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


class TimeWindow:
    """The outcomes of the calls in the last `seconds` whole seconds, one bucket per second."""

    __slots__ = ("_calls", "_fail", "_head", "_slow", "calls", "failures", "seconds", "slow")

    def __init__(self, seconds: int) -> None:
        if seconds < 1:
            raise ValueError(f"a time-based window needs at least 1 second, not {seconds}")
        self.seconds = seconds
        self._calls = [0] * seconds
        self._fail = [0] * seconds
        self._slow = [0] * seconds
        self._head = 0  # the absolute second of the newest bucket
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, now: float, outcome: int) -> None:
        """Count one call at `now` with `outcome` (FAILED/SLOW bits)."""
        sec = int(now)
        if sec > self._head:
            self._roll(sec)
        j = self._head % self.seconds
        self._calls[j] += 1
        self.calls += 1
        if outcome:
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
        n = self.seconds
        self._calls, self._fail, self._slow = [0] * n, [0] * n, [0] * n
        self.calls = self.failures = self.slow = 0

    def _roll(self, sec: int) -> None:
        n = self.seconds
        steps = min(sec - self._head, n)
        for k in range(1, steps + 1):
            j = (self._head + k) % n
            self.calls -= self._calls[j]
            self.failures -= self._fail[j]
            self.slow -= self._slow[j]
            self._calls[j] = self._fail[j] = self._slow[j] = 0
        self._head = sec
