"""Window rate limiters: fixed window, sliding-window log and sliding-window counter.

Theory of operation
-------------------
Each admits at most `limit` permits per `window` seconds, and they differ in what "per window" means:

- `FixedWindow` counts permits in windows aligned on multiples of `window` (`[k·w, (k+1)·w)`), reset at each
  boundary. Cheapest, and with a known weakness: a burst at the end of one window and another at the start of the
  next admit up to **2 × limit within one window's length**. Refusals retry at the next boundary.
- `SlidingWindowLog` keeps the time of every admitted permit and admits while fewer than `limit` fall in
  `(now − w, now]`. Exact: no interval of length `w` ever holds more than `limit`. Memory O(limit).
  Retry-After is when enough of the oldest permits leave the window.
- `SlidingWindowCounter` (Cloudflare's / `limits`' estimate) keeps two aligned counters and estimates the
  sliding count as `previous × (1 − elapsed/w) + current`. O(1) memory and close to the log for steady traffic;
  it never admits more than `limit` in an aligned window, but, being an estimate, an unaligned interval of
  length `w` can hold up to (just under) 2 × limit when the previous window's permits bunched at its end.
  Retry-After is solved from the estimate exactly (it decays linearly).

All follow `limiter.py`: `try_acquire(now, n=1) -> (allowed, retry_after)`; a refusal changes nothing.
"""

from __future__ import annotations

from collections import deque

from jishi.core.resilience.limiter import ALLOW, EPSILON, INFINITE, Decision, positive

__all__ = ["FixedWindow", "SlidingWindowCounter", "SlidingWindowLog"]


class FixedWindow:
    """At most `limit` permits in each aligned window of `window` seconds."""

    __slots__ = ("_count", "_end", "_start", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1:
            raise ValueError(f"rate limiter limit must be at least 1, not {limit}")
        self.limit = limit
        self.window = positive("window", window)
        self._start = -INFINITE
        self._end = -INFINITE  # start + window − EPSILON: from here on, a new window
        self._count = 0

    def try_acquire(self, now: float, n: int = 1) -> Decision:
        """Admit `n` permits at `now` if the current window has room; else when the next window starts."""
        if now >= self._end:
            w = self.window
            start = (now + EPSILON) // w * w
            self._start = start
            self._end = start + w - EPSILON
            self._count = 0
        count = self._count + n
        if count <= self.limit and n >= 1:
            self._count = count
            return ALLOW
        if n < 1:
            raise ValueError(f"a request takes at least 1 permit, not {n}")
        if n > self.limit:
            return False, INFINITE
        return False, max(0.0, self._start + self.window - now)


class SlidingWindowLog:
    """At most `limit` permits in any interval of `window` seconds; remembers each admitted permit."""

    __slots__ = ("_log", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1:
            raise ValueError(f"rate limiter limit must be at least 1, not {limit}")
        self.limit = limit
        self.window = positive("window", window)
        self._log: deque[float] = deque()

    def try_acquire(self, now: float, n: int = 1) -> Decision:
        """Admit `n` permits if fewer than `limit − n + 1` were admitted in `(now − window, now]`."""
        log = self._log
        horizon = now - self.window + EPSILON  # a permit at t is in the window while t > now − window
        while log and log[0] < horizon:
            log.popleft()
        if len(log) + n <= self.limit and n >= 1:
            if n == 1:
                log.append(now)
            else:
                log.extend([now] * n)
            return ALLOW
        if n < 1:
            raise ValueError(f"a request takes at least 1 permit, not {n}")
        if n > self.limit:
            return False, INFINITE
        # the (len + n − limit)-th oldest permit has to leave the window
        oldest_needed = log[len(log) + n - self.limit - 1]
        return False, max(0.0, oldest_needed + self.window - now)


class SlidingWindowCounter:
    """About `limit` permits per sliding `window`, estimated from the current and the previous aligned window."""

    __slots__ = ("_cur", "_end", "_prev", "_start", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1:
            raise ValueError(f"rate limiter limit must be at least 1, not {limit}")
        self.limit = limit
        self.window = positive("window", window)
        self._start = -INFINITE
        self._end = -INFINITE
        self._prev = 0
        self._cur = 0

    def try_acquire(self, now: float, n: int = 1) -> Decision:
        """Admit `n` permits if `previous × (1 − elapsed/window) + current + n ≤ limit`."""
        w = self.window
        if now >= self._end:
            start = (now + EPSILON) // w * w
            self._prev = self._cur if start - self._start < w + EPSILON else 0
            self._cur = 0
            self._start = start
            self._end = start + w - EPSILON
        cur = self._cur + n
        prev = self._prev
        if (not prev or prev * (1.0 - (now - self._start) / w) + cur <= self.limit + EPSILON) and cur <= self.limit:
            if n < 1:
                raise ValueError(f"a request takes at least 1 permit, not {n}")
            self._cur = cur
            return ALLOW
        return False, self._retry_after(now, n)

    def _retry_after(self, now: float, n: int) -> float:
        limit, w, start = self.limit, self.window, self._start
        if n < 1:
            raise ValueError(f"a request takes at least 1 permit, not {n}")
        if n > limit:
            return INFINITE
        room = limit - self._cur - n
        if room >= 0 and self._prev:  # later in this window, once the previous window's share has decayed
            return max(0.0, start + w * (1.0 - room / self._prev) - now)
        # in the next window, where the current count becomes the previous one
        nxt = start + w
        room = limit - n
        if self._cur <= room:
            return max(0.0, nxt - now)
        return max(0.0, nxt + w * (1.0 - room / self._cur) - now)
