"""Request metrics of the gateway: recorded on the hot path (`Stats.record`), read once a second or per scrape.

Theory of operation
-------------------
`Stats.record(ex, now)` runs once per finished exchange. It keeps one flat list of numbers (a *row*) per
(route, instance) pair the gateway has answered for — counts per status class, a fixed-bucket latency
histogram, the latency sum and the retries — and touches nothing else: two dict lookups (route name, then the
`Peer` object), four increments and one `bisect` (about 0.35 µs). Everything coarser (per route, per service,
per instance, per gateway) is summed from the rows when somebody reads them, never on the hot path.

A *report* (`report(proxy, ...)`) is the gateway's cumulative state as plain JSON: the rows, the live gauges
(client connections, upstream pool use), the per-route policy state and the gateway's recent events. Reports
of several workers add up (`merge`), so the parent of N workers serves and pushes the sum of them, and the
control plane sums the reports of its gateways the same way.

Row layout (`ROW_LEN` numbers): `[0..9]` responses by status class (`status // 100`: 2 is 2xx; 0 means no
status was sent), `[10..23]` latency histogram — seconds ≤ `BOUNDS[i]` for i < 13, then +Inf — as plain
(non-cumulative) counts, `[24]` latency sum in seconds, `[25]` retries (tries after the first).
Exchanges that never matched a route are kept under route "" (and instance "" when no peer was picked).
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.proxy import Proxy

__all__ = [
    "BOUNDS",
    "BREAKER_STATES",
    "ROW_LEN",
    "Stats",
    "empty_report",
    "merge",
    "policy_state",
    "report",
    "service_of",
]

BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CLASSES = 10
B0 = CLASSES  # first histogram bucket
SUM = B0 + len(BOUNDS) + 1
RETRIES = SUM + 1
ROW_LEN = RETRIES + 1
BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "disabled", "metrics_only")
# When several workers report different breaker states for one route, the most alarming one is shown.
_BREAKER_RANK = {s: i for i, s in enumerate(("disabled", "metrics_only", "closed", "half_open", "open", "forced_open"))}


_MAX_PEERS = 1024  # peer objects indexed per route before that index starts over


def _new_row() -> list[Any]:
    row: list[Any] = [0] * ROW_LEN
    row[SUM] = 0.0
    return row


class Stats:
    """Counters and latency histograms per (route, instance); see the module doc."""

    __slots__ = ("_by_peer", "rows")

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[Any]] = {}
        # The same rows by route name, then by the `Peer` object itself (identity hash: no key tuple to build on
        # the hot path). Peers are replaced as routing tables change, so a route's map is cleared past a size.
        self._by_peer: dict[str, dict[Any, list[Any]]] = {}

    def record(self, ex: Exchange, now: float, _bisect: Any = bisect_left, _bounds: Any = BOUNDS) -> None:
        """`ex` finished at loop time `now` (its `t0` is on the same clock)."""
        route = ex.route
        name = route.name if route is not None else ""
        peer = ex.peer
        by_peer = self._by_peer.get(name)
        row = by_peer.get(peer) if by_peer is not None else None
        if row is None:
            row = self._row(name, peer)
        elapsed = now - ex.t0
        row[ex.status // 100] += 1
        row[10 + _bisect(_bounds, elapsed)] += 1
        row[24] += elapsed
        if ex.tries > 1:
            row[25] += ex.tries - 1

    def _row(self, name: str, peer: Any) -> list[Any]:
        """The row of route `name` and `peer` (None: no instance), made on first use and indexed by `peer`."""
        key = (name, peer.key if peer is not None else "")
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = _new_row()
        by_peer = self._by_peer.setdefault(name, {})
        if len(by_peer) >= _MAX_PEERS:
            by_peer.clear()
        by_peer[peer] = row
        return row

    def dump(self) -> list[list[Any]]:
        """The rows as JSON-able `[route, instance, row]` triples (copies)."""
        return [[route, instance, list(row)] for (route, instance), row in self.rows.items()]


def service_of(instance: str) -> str:
    """The service of an instance key "service/id" ("" for no instance)."""
    return instance.partition("/")[0]


def policy_state(proxy: Proxy) -> dict[str, dict[str, Any]]:
    """Per-route policy state of `proxy`'s table: breaker state, rejections, retries done, ejected instances.

    Reads `RoutePolicy.state()` and the route's `retries_done` / `ejected()` where the gateway has them;
    a route without them reports neutral values (no breaker, nothing rejected or ejected)."""
    out: dict[str, dict[str, Any]] = {}
    for name, route in proxy.table.routes.items():
        state: dict[str, Any] = {}
        policy = route.policy
        getter = getattr(policy, "state", None)
        if getter is not None:
            state = dict(getter())
        retries = getattr(route, "retries_done", None)
        if callable(retries):
            retries = retries()
        ejected = getattr(route, "ejected", None)
        counters = getattr(route, "counters", None)
        out[name] = {
            "breaker": state.get("breaker"),
            "rate_limited": int(state.get("rate_limited", 0)),
            "shed": int(state.get("shed", 0)),
            "retries": int(retries) if retries is not None else None,
            "ejected": sorted(ejected()) if ejected is not None else [],
            "hedges_sent": int(getattr(counters, "hedges_sent", 0)),
            "hedges_won": int(getattr(counters, "hedges_won", 0)),
        }
    return out


def empty_report(started_at: float | None = None) -> dict[str, Any]:
    """A report of a gateway that has answered nothing yet."""
    return {
        "pid": os.getpid(),
        "started_at": time.time() if started_at is None else started_at,
        "workers": 0,
        "connections": 0,
        "upstream": {"idle": 0, "busy": 0},
        "rows": [],
        "policies": {},
        "events": [],
    }


def report(proxy: Proxy, started_at: float, events: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """The cumulative state of one gateway process (see the module doc); `events` are EventRecord dicts."""
    pool = proxy.pool
    idle_stacks = getattr(pool, "_idle", {})  # the pool's idle connections per address
    stats = proxy.stats
    policies = policy_state(proxy)
    rows = stats.dump() if stats is not None else []
    retries: dict[str, int] = {}
    for route, _instance, row in rows:
        retries[route] = retries.get(route, 0) + row[RETRIES]
    for name, state in policies.items():
        if state["retries"] is None:
            state["retries"] = retries.get(name, 0)
    return {
        "pid": os.getpid(),
        "started_at": started_at,
        "workers": 1,
        "connections": len(proxy.clients),
        "upstream": {"idle": sum(len(stack) for stack in idle_stacks.values()), "busy": len(pool.busy)},
        "rows": rows,
        "policies": policies,
        "events": list(events),
    }


def merge(reports: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The sum of several reports: counters and gauges added, rows added per (route, instance), breaker states
    combined (the most alarming wins), ejected instances united, events concatenated in time order."""
    out = empty_report()
    out["pid"] = os.getpid()
    rows: dict[tuple[str, str], list[Any]] = {}
    started: list[float] = []
    for rep in reports:
        started.append(float(rep.get("started_at", out["started_at"])))
        out["workers"] += int(rep.get("workers", 1))
        out["connections"] += int(rep.get("connections", 0))
        up = rep.get("upstream", {})
        out["upstream"]["idle"] += int(up.get("idle", 0))
        out["upstream"]["busy"] += int(up.get("busy", 0))
        for route, instance, row in rep.get("rows", ()):
            into = rows.get((route, instance))
            if into is None:
                rows[(route, instance)] = list(row)
            else:
                for i, value in enumerate(row):
                    into[i] += value
        for name, state in rep.get("policies", {}).items():
            _merge_policy(out["policies"].setdefault(name, _neutral_policy()), state)
        out["events"].extend(rep.get("events", ()))
    if started:
        out["started_at"] = min(started)
    out["rows"] = [[route, instance, row] for (route, instance), row in rows.items()]
    out["events"].sort(key=lambda e: e.get("time", 0.0))
    return out


def _neutral_policy() -> dict[str, Any]:
    return {
        "breaker": None,
        "rate_limited": 0,
        "shed": 0,
        "retries": 0,
        "ejected": [],
        "hedges_sent": 0,
        "hedges_won": 0,
    }


def _merge_policy(into: dict[str, Any], state: dict[str, Any]) -> None:
    breaker = state.get("breaker")
    if breaker is not None and (
        into["breaker"] is None or _BREAKER_RANK.get(breaker, 0) > _BREAKER_RANK.get(into["breaker"], 0)
    ):
        into["breaker"] = breaker
    for field in ("rate_limited", "shed", "retries", "hedges_sent", "hedges_won"):
        into[field] += int(state.get(field) or 0)
    into["ejected"] = sorted(set(into["ejected"]) | set(state.get("ejected", ())))
