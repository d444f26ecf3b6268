"""Adaptive concurrency limits (Netflix concurrency-limits): find how many calls a backend can take at once.

Theory of operation
-------------------
A `ConcurrencyLimiter` admits a call while fewer than `limit` are in flight and sheds the rest. When a call
ends, the shell reports `release(inflight, rtt, dropped)` — `inflight` as returned by `try_acquire` — and the
limit algorithm updates the limit from that sample:

- `AIMDLimit` (additive increase, multiplicative decrease): a dropped call (timeout, 503, shed downstream) or an
  RTT over `timeout` multiplies the limit by `backoff_ratio`; otherwise, if the limit was in use (inflight ≥
  limit / 2), it grows by 1. Converges to a saw-tooth just under the capacity where calls start to drop.
- `GradientLimit` (Netflix Gradient2): compares a long-term RTT average (exponential, `long_window` samples,
  `warmup` samples of plain mean first) with the sample RTT:

      gradient  = clamp(rtt_tolerance × long_rtt / rtt, 0.5, 1.0)
      new       = limit × gradient + queue_size
      limit     = clamp(limit × (1 − smoothing) + new × smoothing, min_limit, max_limit)

  so the limit grows by about `queue_size × smoothing` a sample while latency holds, and shrinks (at most
  halving each sample before smoothing) once RTT rises past `rtt_tolerance` × its long-term value, i.e. once a
  queue forms. When `long_rtt / rtt > 2` the long average is decayed by 5 % so it recovers after a latency spike.
  Samples while the limiter is under-used (inflight < limit / 2) do not change the limit (app-limited). A
  dropped sample is treated as the worst gradient (0.5), as a queue that overflowed.

Both react to every sample they are given. When feedback lags — samples report on calls admitted a round trip
ago — per-sample updates overshoot and then cut the limit once per late sample. `WindowedLimit` (Netflix's
`WindowedLimit`) wraps either and feeds it one aggregate per window of `max(min_samples, limit)` samples — about
one round trip at saturation: mean RTT, the largest inflight, and whether any call dropped. That makes AIMD add
one per round trip, as TCP does, and is the recommended way to run both.

RTTs are in seconds. Limits are floats internally; `limit` is the integer the limiter admits against.
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["AIMDLimit", "ConcurrencyLimiter", "GradientLimit", "LimitAlgorithm", "WindowedLimit"]


class LimitAlgorithm(Protocol):
    @property
    def limit(self) -> int: ...

    def update(self, rtt: float, inflight: int, dropped: bool) -> int: ...


def _check_bounds(initial: int, min_limit: int, max_limit: int) -> None:
    if not 1 <= min_limit <= initial <= max_limit:
        raise ValueError(
            f"concurrency limit needs 1 <= min_limit <= initial <= max_limit, got {min_limit}, {initial}, {max_limit}"
        )


class AIMDLimit:
    """Additive increase (+1 when the limit is in use), multiplicative decrease on drops or timeouts."""

    __slots__ = ("_limit", "backoff_ratio", "max_limit", "min_limit", "timeout")

    def __init__(
        self,
        initial: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 200,
        backoff_ratio: float = 0.9,
        timeout: float = math.inf,
    ) -> None:
        _check_bounds(initial, min_limit, max_limit)
        if not 0.5 <= backoff_ratio < 1:
            raise ValueError(f"AIMD backoff_ratio must be in [0.5, 1), not {backoff_ratio!r}")
        self._limit = initial
        self.min_limit, self.max_limit = min_limit, max_limit
        self.backoff_ratio, self.timeout = backoff_ratio, timeout

    @property
    def limit(self) -> int:
        return self._limit

    def update(self, rtt: float, inflight: int, dropped: bool) -> int:
        """Take one sample; returns the new limit."""
        if dropped or rtt > self.timeout:
            self._limit = max(self.min_limit, int(self._limit * self.backoff_ratio))
        elif inflight * 2 >= self._limit:
            self._limit = min(self.max_limit, self._limit + 1)
        return self._limit


class GradientLimit:
    """Netflix's Gradient2: shrink when sample RTT rises above the long-term RTT, grow while it does not."""

    __slots__ = (
        "_count",
        "_estimate",
        "_factor",
        "_long_rtt",
        "max_limit",
        "min_limit",
        "queue_size",
        "rtt_tolerance",
        "smoothing",
        "warmup",
    )

    def __init__(
        self,
        initial: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 200,
        smoothing: float = 0.2,
        rtt_tolerance: float = 1.5,
        long_window: int = 600,
        warmup: int = 10,
        queue_size: float = 4.0,
    ) -> None:
        _check_bounds(initial, min_limit, max_limit)
        if not 0 < smoothing <= 1:
            raise ValueError(f"gradient smoothing must be in (0, 1], not {smoothing!r}")
        if not rtt_tolerance >= 1:
            raise ValueError(f"gradient rtt_tolerance must be at least 1, not {rtt_tolerance!r}")
        if long_window < 1 or warmup < 1:
            raise ValueError(f"gradient long_window and warmup must be at least 1, got {long_window}, {warmup}")
        self._estimate = float(initial)
        self.min_limit, self.max_limit = min_limit, max_limit
        self.smoothing, self.rtt_tolerance, self.queue_size = smoothing, rtt_tolerance, queue_size
        self.warmup = warmup
        self._factor = 2.0 / (long_window + 1)
        self._long_rtt = 0.0
        self._count = 0

    @property
    def limit(self) -> int:
        return int(self._estimate)

    @property
    def long_rtt(self) -> float:
        return self._long_rtt

    def update(self, rtt: float, inflight: int, dropped: bool) -> int:
        """Take one sample; returns the new limit."""
        if not rtt > 0:
            raise ValueError(f"gradient limit: an RTT sample must be positive seconds, not {rtt!r}")
        if self._count < self.warmup:
            self._count += 1
            self._long_rtt += (rtt - self._long_rtt) / self._count
        else:
            self._long_rtt += (rtt - self._long_rtt) * self._factor
        if self._long_rtt / rtt > 2.0:
            self._long_rtt *= 0.95
        estimate = self._estimate
        if inflight < estimate / 2 and not dropped:
            return int(estimate)
        gradient = 0.5 if dropped else max(0.5, min(1.0, self.rtt_tolerance * self._long_rtt / rtt))
        new = estimate * gradient + self.queue_size
        new = estimate * (1.0 - self.smoothing) + new * self.smoothing
        self._estimate = max(float(self.min_limit), min(float(self.max_limit), new))
        return int(self._estimate)


class WindowedLimit:
    """Feeds `algorithm` one aggregate sample per window of `max(min_samples, limit)` samples."""

    __slots__ = ("_dropped", "_inflight", "_n", "_rtt_sum", "algorithm", "min_samples")

    def __init__(self, algorithm: LimitAlgorithm, min_samples: int = 10) -> None:
        if min_samples < 1:
            raise ValueError(f"windowed limit min_samples must be at least 1, not {min_samples}")
        self.algorithm = algorithm
        self.min_samples = min_samples
        self._n = 0
        self._rtt_sum = 0.0
        self._inflight = 0
        self._dropped = False

    @property
    def limit(self) -> int:
        return self.algorithm.limit

    def update(self, rtt: float, inflight: int, dropped: bool) -> int:
        """Add one sample; at the end of a window, update the algorithm. Returns the (possibly new) limit."""
        self._n += 1
        self._rtt_sum += rtt
        if inflight > self._inflight:
            self._inflight = inflight
        self._dropped = self._dropped or dropped
        if self._n < max(self.min_samples, self.algorithm.limit):
            return self.algorithm.limit
        mean, most, drop = self._rtt_sum / self._n, self._inflight, self._dropped
        self._n, self._rtt_sum, self._inflight, self._dropped = 0, 0.0, 0, False
        return self.algorithm.update(mean, most, drop)


class ConcurrencyLimiter:
    """Admits calls while fewer than the algorithm's limit are in flight; learns the limit from their RTTs."""

    __slots__ = ("algorithm", "inflight", "rejected")

    def __init__(self, algorithm: LimitAlgorithm) -> None:
        self.algorithm = algorithm
        self.inflight = 0
        self.rejected = 0

    @property
    def limit(self) -> int:
        return self.algorithm.limit

    def try_acquire(self) -> int:
        """Admit a call? Returns the calls in flight including it (≥ 1), or 0 if it is shed."""
        if self.inflight >= self.algorithm.limit:
            self.rejected += 1
            return 0
        self.inflight += 1
        return self.inflight

    def release(self, inflight: int, rtt: float, dropped: bool = False) -> int:
        """The call admitted with `inflight` ended after `rtt` seconds; returns the new limit."""
        if self.inflight < 1:
            raise ValueError("concurrency limiter: release() without a call in flight")
        self.inflight -= 1
        return self.algorithm.update(rtt, inflight, dropped)

    def release_ignored(self) -> None:
        """The call ended without a sample worth learning from (cancelled by the caller)."""
        if self.inflight < 1:
            raise ValueError("concurrency limiter: release_ignored() without a call in flight")
        self.inflight -= 1
