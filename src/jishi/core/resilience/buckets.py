"""Bucket rate limiters: token bucket, leaky bucket as a meter, and leaky bucket as a queue.

Theory of operation
-------------------
- `TokenBucket(rate, burst)`: a bucket of at most `burst` tokens, refilled at `rate` tokens per second, starting
  full. A request for `n` takes `n` tokens if there are that many. Over any interval of length t it admits at
  most `burst + rate·t` permits. Retry-After = `(n − tokens) / rate`.
- `LeakyBucketMeter(rate, capacity)`: the same limit seen from the other side — each admitted permit pours one
  unit into a bucket of `capacity` that leaks at `rate` per second; a request that would overflow it is refused
  (nginx `limit_req` with `burst` and `nodelay`). Starts empty. Retry-After = `(level + n − capacity) / rate`.
- `LeakyBucketQueue(rate, max_queue)`: requests are *delayed*, not refused, so that they leave evenly spaced
  `1/rate` apart (nginx `limit_req` without `nodelay`, Sentinel's rate limiter controller). The answer
  `(True, delay)` tells the shell to send the request at `now + delay`. At most `max_queue` requests may be
  waiting ahead of a new one; past that it is refused, with Retry-After = when a place frees up.

Refill and leak are computed from the time since the last decision, no timers. Time never runs backwards here:
a `now` earlier than the last one is treated as the last one.
"""

from __future__ import annotations

from jishi.core.resilience.limiter import ALLOW, EPSILON, INFINITE, Decision, positive

__all__ = ["LeakyBucketMeter", "LeakyBucketQueue", "TokenBucket"]


class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second; starts full."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = positive("rate", rate)
        self.burst = positive("burst", burst)
        self._tokens = float(burst)
        self._last = -INFINITE

    def try_acquire(self, now: float, n: int = 1) -> Decision:
        """Take `n` tokens at `now` if the bucket holds them; else the seconds until it will."""
        tokens = self._tokens
        if now > self._last:
            tokens += (now - self._last) * self.rate
            if tokens > self.burst:
                tokens = self.burst
            self._last = now
            self._tokens = tokens
        if tokens + EPSILON >= n and n >= 1:
            self._tokens = tokens - n
            return ALLOW
        if n < 1:
            raise ValueError(f"a request takes at least 1 permit, not {n}")
        if n > self.burst:
            return False, INFINITE
        return False, (n - tokens) / self.rate

    def tokens(self, now: float) -> float:
        """The tokens the bucket would hold at `now`."""
        if now <= self._last:
            return self._tokens
        return min(self.burst, self._tokens + (now - self._last) * self.rate)


class LeakyBucketMeter:
    """A bucket of `capacity` leaking at `rate` per second; each admitted permit adds one unit; starts empty."""

    __slots__ = ("_last", "_level", "capacity", "rate")

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = positive("rate", rate)
        self.capacity = positive("capacity", capacity)
        self._level = 0.0
        self._last = -INFINITE

    def try_acquire(self, now: float, n: int = 1) -> Decision:
        """Add `n` units at `now` if the bucket has room; else the seconds until it will."""
        level = self._level
        if now > self._last:
            if level:
                level -= (now - self._last) * self.rate
                if level < 0.0:
                    level = 0.0
                self._level = level
            self._last = now
        if level + n <= self.capacity + EPSILON and n >= 1:
            self._level = level + n
            return ALLOW
        if n < 1:
            raise ValueError(f"a request takes at least 1 permit, not {n}")
        if n > self.capacity:
            return False, INFINITE
        return False, (level + n - self.capacity) / self.rate


class LeakyBucketQueue:
    """Spaces admitted requests `1/rate` apart, with at most `max_queue` waiting ahead of a new one."""

    __slots__ = ("_interval", "_max_delay", "_next_free", "max_queue", "rate")

    def __init__(self, rate: float, max_queue: int) -> None:
        self.rate = positive("rate", rate)
        if max_queue < 0:
            raise ValueError(f"rate limiter max_queue must be >= 0, not {max_queue}")
        self.max_queue = max_queue
        self._interval = 1.0 / rate
        self._max_delay = max_queue / rate  # the wait of the last place in the queue
        self._next_free = -INFINITE  # when the next request may leave

    def try_acquire(self, now: float, n: int = 1) -> Decision:
        """`(True, delay)`: send at `now + delay`; `(False, retry_after)`: the queue is full."""
        if n < 1:
            raise ValueError(f"a request takes at least 1 permit, not {n}")
        start = self._next_free if self._next_free > now else now
        delay = start - now
        if delay > self._max_delay + EPSILON:
            return False, delay - self._max_delay
        self._next_free = start + n * self._interval
        return (True, delay) if delay else ALLOW

    def waiting(self, now: float) -> int:
        """How many admitted requests have not left yet at `now` (including one leaving right now)."""
        if self._next_free <= now:
            return 0
        return int((self._next_free - now) * self.rate - EPSILON) + 1
