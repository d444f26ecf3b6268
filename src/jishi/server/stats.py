"""`StatsBoard`: the control plane's view of the gateways' traffic, built from their reports (`GET /v1/stats`).

Theory of operation
-------------------
Every gateway pushes its cumulative report once a second (`jishi.gateway.stats`: rows of counters and
latency-histogram buckets per (route, instance), gauges, per-route policy state). `ingest(gateway_id,
report, now)` keeps, per gateway, the reports of the last `keep` seconds stamped with the board's own clock
(`now`; the server passes `time.time()`), so a gateway's clock never skews the windows.

`snapshot(now)` reads the gateways that reported in the last `stale_after` seconds:

- totals (`requests`, `errors`, `status`) are the latest reports summed;
- window figures compare each gateway's latest report with its oldest one at most `window` seconds older:
  `rps` = request delta ÷ the time between them (summed over gateways), `error_ratio` = 5xx delta ÷ request
  delta, `p50_ms`/`p99_ms` = quantiles of the summed bucket deltas, interpolated within a bucket like
  Prometheus's `histogram_quantile` (null without requests in the window). A gateway with one report in the
  window is compared with zero at its `started_at`; a gateway whose `started_at` changed (it restarted, its
  counters began again) is compared with zero at the new start.

The shape is the `/v1/stats` contract (docs/operations.md, "Metrics"). `totals(now)` is the merged latest
report itself, for the server's `/metrics` and for alert rules.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from jishi.gateway.stats import B0, BOUNDS, CLASSES, ROW_LEN, SUM, merge, service_of

POLICY_FIELDS = ("breaker", "rate_limited", "shed", "retries", "ejected", "hedges_sent", "hedges_won")

__all__ = ["StatsBoard", "quantile"]

Key = tuple[str, str]
_STATUS = {"2xx": 2, "3xx": 3, "4xx": 4, "5xx": 5}


def quantile(q: float, buckets: list[Any]) -> float | None:
    """The `q` quantile (seconds) of non-cumulative `buckets` over `BOUNDS` (+Inf last); None if empty.

    Linear within the bucket it falls in; the +Inf bucket answers the highest finite bound."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    running = 0.0
    for i, count in enumerate(buckets):
        if count and running + count >= rank:
            if i >= len(BOUNDS):
                return BOUNDS[-1]
            lower = BOUNDS[i - 1] if i > 0 else 0.0
            return float(lower + (BOUNDS[i] - lower) * (rank - running) / count)
        running += count
    return BOUNDS[-1]


def _rows(report: dict[str, Any]) -> dict[Key, list[Any]]:
    return {(route, instance): row for route, instance, row in report.get("rows", ())}


class _Acc:
    """Totals, window deltas and the summed rate of one key (a route, a service or an instance)."""

    __slots__ = ("delta", "rps", "total")

    def __init__(self) -> None:
        self.total: list[Any] = [0] * ROW_LEN
        self.delta: list[Any] = [0] * ROW_LEN
        self.rps = 0.0

    def add(self, total: list[Any], delta: list[Any], span: float) -> None:
        for i in range(ROW_LEN):
            self.total[i] += total[i]
            self.delta[i] += delta[i]
        if span > 0:
            self.rps += sum(delta[:CLASSES]) / span

    def row(self) -> dict[str, Any]:
        total, delta = self.total, self.delta
        requests = sum(total[:CLASSES])
        window_requests = sum(delta[:CLASSES])
        p50 = quantile(0.5, delta[B0:SUM])
        p99 = quantile(0.99, delta[B0:SUM])
        return {
            "requests": requests,
            "errors": total[5],
            "rps": round(self.rps, 3),
            "error_ratio": round(delta[5] / window_requests, 4) if window_requests else 0.0,
            "p50_ms": round(p50 * 1000, 3) if p50 is not None else None,
            "p99_ms": round(p99 * 1000, 3) if p99 is not None else None,
            "status": {name: total[index] for name, index in _STATUS.items()},
        }


class StatsBoard:
    """The gateways' latest reports and a short history of them; see the module doc."""

    def __init__(self, *, window: float = 10.0, stale_after: float = 15.0, keep: float = 30.0) -> None:
        self.window = window
        self.stale_after = stale_after
        self.keep = max(keep, window * 2)
        self._history: dict[str, deque[tuple[float, dict[str, Any]]]] = {}

    def ingest(self, gateway_id: str, report: dict[str, Any], now: float) -> None:
        """Take gateway `gateway_id`'s cumulative `report`, received at `now` (events are not kept here)."""
        kept = {k: v for k, v in report.items() if k != "events"}
        history = self._history.setdefault(gateway_id, deque())
        history.append((now, kept))
        while len(history) > 1 and history[0][0] < now - self.keep:
            history.popleft()
        for gid in [g for g, h in self._history.items() if h[-1][0] < now - self.keep]:
            del self._history[gid]  # gone for good: not even in the totals any more

    def _live(self, now: float) -> dict[str, deque[tuple[float, dict[str, Any]]]]:
        return {gid: h for gid, h in self._history.items() if h[-1][0] >= now - self.stale_after}

    def totals(self, now: float) -> dict[str, Any]:
        """The latest reports of the live gateways, summed (`jishi.gateway.stats.merge`)."""
        return merge(history[-1][1] for history in self._live(now).values())

    def _base(self, history: deque[tuple[float, dict[str, Any]]]) -> tuple[float, dict[Key, list[Any]]]:
        """The time and rows the latest report of `history` is compared with (see the module doc)."""
        t1, latest = history[-1]
        started = float(latest.get("started_at", t1))
        for t0, rep in history:
            if t0 >= t1 - self.window and t0 < t1 and rep.get("started_at") == latest.get("started_at"):
                return t0, _rows(rep)
        if started >= t1 - self.window:
            return min(started, t1), {}
        return t1, _rows(latest)  # nothing to compare with: no window figures yet

    def snapshot(self, now: float) -> dict[str, Any]:
        """The `/v1/stats` document (see the module doc)."""
        live = self._live(now)
        routes: dict[str, _Acc] = {}
        services: dict[str, _Acc] = {}
        instances: dict[str, _Acc] = {}
        gateways = []
        zero = [0] * ROW_LEN
        for gid, history in sorted(live.items()):
            t1, latest = history[-1]
            gateways.append(
                {
                    "id": gid,
                    "reported_at": t1,
                    "connections": int(latest.get("connections", 0)),
                    "workers": int(latest.get("workers", 0)),
                }
            )
            t0, base = self._base(history)
            span = t1 - t0
            for key, row in _rows(latest).items():
                before = base.get(key, zero)
                delta = [max(a - b, 0) for a, b in zip(row, before, strict=True)]
                route, instance = key
                targets = []
                if route:
                    targets.append(routes.setdefault(route, _Acc()))
                if instance:
                    targets.append(instances.setdefault(instance, _Acc()))
                    targets.append(services.setdefault(service_of(instance), _Acc()))
                for acc in targets:
                    acc.add(row, delta, span)
        policies = merge(history[-1][1] for history in live.values())["policies"]
        return {
            "time": now,
            "window": self.window,
            "gateways": gateways,
            "routes": {name: acc.row() for name, acc in sorted(routes.items())},
            "services": {name: acc.row() for name, acc in sorted(services.items())},
            "instances": {name: acc.row() for name, acc in sorted(instances.items())},
            "policies": {name: {k: state.get(k) for k in POLICY_FIELDS} for name, state in sorted(policies.items())},
        }
