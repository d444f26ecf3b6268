"""A clock that moves only when told to, for exact-time tests of time-driven code."""

from __future__ import annotations


class FakeClock:
    """Callable like `time.monotonic`; `advance(dt)` moves it. Starts at `start` (default 1000.0)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    @property
    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError(f"a clock cannot go back (from {self._now} to {when})")
        self._now = when
