"""Passive outlier detection (Envoy): eject peers whose real traffic fails, for a time that grows with repeats.

Theory of operation
-------------------
Active health checks ask a peer whether it is well; outlier detection watches the answers it gives to real
requests. The shell reports every result with `on_result(peer, outcome, now)` — an `Outcome`, or an HTTP status
that `classify` turns into one (a connect failure, reset or timeout is reported as 502/503/504: a *gateway
error*); `success(peer)` records a success with counters only (the hot path's usual case). Three detectors, as
in Envoy:

* **consecutive 5xx**: `consecutive_5xx` server errors in a row (gateway errors count too) eject the peer
  at once; any success (status < 500) resets the run.
* **consecutive gateway errors**: `consecutive_gateway_failure` gateway errors in a row eject it at once.
  0 turns a detector off.
* **success rate**, every `interval` seconds: among peers with at least `success_rate_request_volume`
  results in the interval, if there are at least `success_rate_minimum_hosts` of them, a peer whose success
  rate is below `mean - success_rate_stdev_factor * stdev` is ejected (lowest first).

An ejection lasts `min(base_ejection_time * n, max(base_ejection_time, max_ejection_time))`, where n counts the
peer's ejections (1 for the first: base; 2 for the second: twice base ...). Every interval in which a peer is in
the rotation and has been back for at least one interval takes one off n, so a peer that recovers for good is
forgiven step by step. The peer comes back exactly at the end of its ejection: `tick(now)` returns it, and the
shell calls `tick` at `next_deadline()` (the earliest return or interval end). No more than
`max_ejection_percent` % of the peers are ejected at once, except that one peer may always be ejected (Envoy).

Both `on_result` and `tick` return the list of `Change`s they made; the shell applies them (`PeerSet.set_up`)
and logs them. Nothing here reads a clock: all times are the `now` arguments. Not here (yet): Envoy's
`enforcing_*` percentages, failure-percentage ejection, jitter of the ejection time.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Change", "Outcome", "OutlierConfig", "OutlierDetector", "Reason", "classify"]

K = TypeVar("K", bound=Hashable)


class Outcome(enum.Enum):
    SUCCESS = "success"  # status < 500
    SERVER_ERROR = "server_error"  # a 5xx from the peer other than 502/503/504
    GATEWAY_ERROR = "gateway_error"  # 502/503/504, or no answer at all (connect failure, reset, timeout)


def classify(status: int) -> Outcome:
    """The outcome of an HTTP status (report a connect failure, reset or timeout as 502, 503 or 504)."""
    if status < 500:
        return Outcome.SUCCESS
    if status in (502, 503, 504):
        return Outcome.GATEWAY_ERROR
    return Outcome.SERVER_ERROR


class Reason(enum.Enum):
    CONSECUTIVE_5XX = "consecutive_5xx"
    CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
    SUCCESS_RATE = "success_rate"
    RETURNED = "returned"  # the ejection time is over


@dataclass(frozen=True, slots=True)
class Change(Generic[K]):
    """`peer` was ejected (until `until`) or returned to the rotation, and why."""

    peer: K
    ejected: bool
    reason: Reason
    at: float
    until: float | None = None


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Envoy's outlier detection settings and defaults (times in seconds, percents 0-100, factor 1.9 = 1900)."""

    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 0
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: float = 10.0
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: float = 1.9
    success_rate_enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("consecutive_5xx", "consecutive_gateway_failure", "success_rate_minimum_hosts"):
            if getattr(self, name) < 0:
                raise ValueError(f"outlier detection {name} must be >= 0, not {getattr(self, name)!r}")
        if self.interval <= 0 or self.base_ejection_time <= 0 or self.max_ejection_time < 0:
            raise ValueError("outlier detection interval and base_ejection_time must be > 0, max_ejection_time >= 0")
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError(f"max_ejection_percent must be in [0, 100], not {self.max_ejection_percent!r}")
        if self.success_rate_request_volume < 1 or self.success_rate_stdev_factor < 0:
            raise ValueError("success_rate_request_volume must be >= 1 and success_rate_stdev_factor >= 0")

    def ejection_time(self, ejections: int) -> float:
        """How long the `ejections`-th ejection (counting from 1) of a peer lasts."""
        return min(self.base_ejection_time * ejections, max(self.base_ejection_time, self.max_ejection_time))


class _Host:
    __slots__ = (
        "consecutive_5xx",
        "consecutive_gateway",
        "ejected_until",
        "ejections",
        "failures",
        "requests",
        "since",
    )

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ejected_until: float | None = None
        self.ejections = 0  # the multiplier of the ejection time
        self.requests = 0  # in the current interval
        self.failures = 0
        self.since = -math.inf  # when it last returned


class OutlierDetector(Generic[K]):
    """Ejects peers that fail real traffic and returns them on time; see the module doc."""

    __slots__ = ("_hosts", "config", "next_interval")

    def __init__(self, config: OutlierConfig | None = None, peers: Iterable[K] = (), *, now: float = 0.0) -> None:
        self.config = config or OutlierConfig()
        self._hosts: dict[K, _Host] = {p: _Host() for p in peers}
        self.next_interval = now + self.config.interval

    def add(self, peer: K) -> None:
        """Watch `peer` too (no-op if already watched)."""
        self._hosts.setdefault(peer, _Host())

    def remove(self, peer: K) -> None:
        """Stop watching `peer` (it left the upstream)."""
        self._hosts.pop(peer, None)

    def is_ejected(self, peer: K) -> bool:
        host = self._hosts.get(peer)
        return host is not None and host.ejected_until is not None

    def ejected(self) -> list[K]:
        """The peers ejected now."""
        return [p for p, h in self._hosts.items() if h.ejected_until is not None]

    def ejections(self, peer: K) -> int:
        """The current ejection-time multiplier of `peer`."""
        return self._hosts[peer].ejections

    def next_deadline(self) -> float:
        """When `tick` next has work: the earliest end of an ejection or the end of the interval."""
        ends = [h.ejected_until for h in self._hosts.values() if h.ejected_until is not None]
        return min([self.next_interval, *ends])

    def success(self, peer: K) -> None:
        """Record one successful result (status < 500) of `peer`: `on_result` for a success, counters only."""
        host = self._hosts.get(peer)
        if host is not None:
            host.requests += 1
            host.consecutive_5xx = host.consecutive_gateway = 0

    def on_result(self, peer: K, outcome: Outcome | int, now: float) -> list[Change[K]]:
        """Record one result of a request to `peer`; the ejection it caused, if any."""
        host = self._hosts.get(peer)
        if host is None:
            return []
        if isinstance(outcome, int):
            outcome = classify(outcome)
        cfg = self.config
        host.requests += 1
        if outcome is Outcome.SUCCESS:
            host.consecutive_5xx = host.consecutive_gateway = 0
            return []
        host.failures += 1
        host.consecutive_5xx += 1
        host.consecutive_gateway = host.consecutive_gateway + 1 if outcome is Outcome.GATEWAY_ERROR else 0
        if host.ejected_until is not None:
            return []
        if cfg.consecutive_gateway_failure and host.consecutive_gateway >= cfg.consecutive_gateway_failure:
            return self._eject(peer, host, Reason.CONSECUTIVE_GATEWAY_FAILURE, now)
        if cfg.consecutive_5xx and host.consecutive_5xx >= cfg.consecutive_5xx:
            return self._eject(peer, host, Reason.CONSECUTIVE_5XX, now)
        return []

    def tick(self, now: float) -> list[Change[K]]:
        """Return the peers whose ejection is over and, at the end of an interval, run success-rate ejection."""
        changes: list[Change[K]] = []
        for peer, host in self._hosts.items():
            if host.ejected_until is not None and host.ejected_until <= now:
                host.ejected_until = None
                host.since = now
                host.consecutive_5xx = host.consecutive_gateway = 0
                changes.append(Change(peer, False, Reason.RETURNED, now))
        if now >= self.next_interval:
            changes += self._end_interval(now)
            passed = math.floor((now - self.next_interval) / self.config.interval) + 1
            self.next_interval += passed * self.config.interval
        return changes

    def _end_interval(self, now: float) -> list[Change[K]]:
        cfg = self.config
        changes: list[Change[K]] = []
        for host in self._hosts.values():
            if host.ejected_until is None and host.ejections > 0 and now - host.since >= cfg.interval:
                host.ejections -= 1
        if cfg.success_rate_enabled:
            rates = {
                p: 1.0 - h.failures / h.requests
                for p, h in self._hosts.items()
                if h.ejected_until is None and h.requests >= cfg.success_rate_request_volume
            }
            if rates and len(rates) >= cfg.success_rate_minimum_hosts:
                mean = sum(rates.values()) / len(rates)
                stdev = math.sqrt(sum((r - mean) ** 2 for r in rates.values()) / len(rates))
                floor = mean - cfg.success_rate_stdev_factor * stdev
                for peer in sorted((p for p, r in rates.items() if r < floor), key=rates.__getitem__):
                    changes += self._eject(peer, self._hosts[peer], Reason.SUCCESS_RATE, now)
        for host in self._hosts.values():
            host.requests = host.failures = 0
        return changes

    def _eject(self, peer: K, host: _Host, reason: Reason, now: float) -> list[Change[K]]:
        ejected = sum(1 for h in self._hosts.values() if h.ejected_until is not None)
        if ejected and 100.0 * (ejected + 1) / len(self._hosts) > self.config.max_ejection_percent:
            return []
        host.ejections += 1
        host.ejected_until = now + self.config.ejection_time(host.ejections)
        host.consecutive_5xx = host.consecutive_gateway = 0
        return [Change(peer, True, reason, now, host.ejected_until)]
