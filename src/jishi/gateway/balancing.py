"""The gateway side of per-route load balancing, outlier detection, retry budgets and total timeouts.

`attach(table, previous, proxy)` (from `Proxy.set_table`) gives every route with an `lb`, `health_check` or
`outlier` section its `jishi.core.peer_group.PeerGroup` (the previous one kept while the route and its peers are
unchanged) and every route with a retry budget its `RetryBudget` (kept while the budget is unchanged), then lets
the proxy's active health checks (`jishi.gateway.health`) follow the new table.

Routes whose entry is `tracked` report each try, around the hot path's calls:

    pick(client, ex, route, now, exclude)   the peer for a try (the request's hash key for ring_hash / maglev)
    begin(ex, route, peer, now)             the try starts: in flight on its peer, counted by the retry budget
    end(client, ex, status)                 the try ended: latency to the picker, the outcome (status; 502/503/504
                                            for reset, connect failure, timeout; 0: no verdict) to the outlier
                                            detector, whose ejections become events in `proxy.events`

For the first try `dispatch.proceed` does what `pick` (without a hash key) and `begin` do itself, one call fewer
each; keep the two in step. A success is counted by the outlier detector with counters only (`success`), without
a clock read; the analysis (success rate, ejection ends) runs on the tick.

`tick(proxy, now)` runs on the proxy's housekeeping (every 50 ms): expired failure marks and ejections end there.
A route without any of these sections has no peer group and is not tracked: none of this runs for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from jishi.core.peer_group import PeerGroup
from jishi.core.resilience import HedgePolicy, RetryBudget
from jishi.gateway import hedging
from jishi.registry.model import EventRecord

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.core.lb import Change
    from jishi.core.peer_group import HealthChange
    from jishi.core.routing import RouteEntry, RoutingTable
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.proxy import Proxy

__all__ = ["attach", "begin", "end", "health_event", "pick", "release_retry", "request_key", "tick"]

log = logging.getLogger(__name__)


def attach(table: RoutingTable, previous: RoutingTable | None, proxy: Proxy) -> None:
    """Give the routes of `table` their peer groups and retry budgets (kept from `previous` where unchanged)."""
    now = proxy.loop.time()
    groups: list[RouteEntry] = []
    for route in table.routes.values():
        old = previous.routes.get(route.name) if previous is not None else None
        if route.group is not None:
            specs = [p.spec for p in route.balancer.peers]
            prior = old.lb if old is not None else None
            try:
                route.lb = PeerGroup.build(specs, route.group, now=now, previous=prior)
            except ValueError as exc:  # a configuration the core refuses: fall back to round-robin, loudly
                log.error("route %s: load balancing not applied (%s); using round-robin", route.name, exc)
                route.group = None
            else:
                groups.append(route)
        spec = route.spec
        retry = getattr(spec, "retry", None)
        budget = getattr(retry, "budget", None)
        if budget is not None:
            kept = old.budget if old is not None else None
            same = kept is not None and (kept.budget_percent, kept.min_retry_concurrency) == (
                budget.percent,
                budget.min_retries,
            )
            route.budget = kept if same else RetryBudget(budget.percent, budget.min_retries)
        hedge = getattr(spec, "hedge", None)
        if hedge is not None:  # hedged tries are counted like any other (`jishi.gateway.hedging`)
            kept_timer = old.hedge if old is not None else None
            policy = HedgePolicy(hedge.delay, hedge.max_hedges)
            same_timer = kept_timer is not None and kept_timer.policy == policy
            route.hedge = kept_timer if same_timer else hedging.HedgeTimer(policy)
            route.tracked = True
    proxy.groups = groups


def pick(
    client: ClientConnection, ex: Exchange, route: RouteEntry, now: float, exclude: Collection[Peer] | None = None
) -> Peer | None:
    """The peer for the next try of `ex` on a tracked route (never one of `exclude`)."""
    lb: PeerGroup | None = route.lb
    if lb is None:
        return route.balancer.pick(now, exclude)
    key = request_key(client, ex, route.hash_on) if route.hash_on is not None else None
    if exclude:
        return lb.pick(now, client.proxy.rng, key, exclude)
    ep = lb.picker.pick(now, client.proxy.rng, key)
    return None if ep is None else ep.target  # type: ignore[return-value]


def begin(ex: Exchange, route: RouteEntry, peer: Peer, now: float) -> None:
    """A try of `ex` on `peer` starts at `now`."""
    if ex.tracked:
        return
    ex.tracked = True
    ex.try_start = now
    lb: PeerGroup | None = route.lb
    if lb is not None:
        ep = peer.endpoint
        if ep is not None:
            if lb.counts_only:
                ep.active += 1
            else:
                lb.picker.on_start(ep, now)
    if route.budget is not None:
        route.budget.request_started()


def end(client: ClientConnection, ex: Exchange, status: int) -> None:
    """The current try of `ex` ended with `status` (0: no verdict on the peer)."""
    if not ex.tracked:
        return
    ex.tracked = False
    route = ex.route
    peer = ex.peer
    assert route is not None and peer is not None
    lb: PeerGroup | None = route.lb
    if lb is not None:
        outlier = lb.outlier
        if lb.counts_only and (outlier is None or status < 500):
            # the usual case: in-flight count and (for a success) the outlier detector's counters; no clock read
            ep = peer.endpoint
            if ep is not None and ep.active > 0:
                ep.active -= 1
            if status and outlier is not None:
                outlier.success(peer.key)
        else:
            now = client.loop.time()
            changes = lb.finished(peer, now, now - ex.try_start, status)
            if changes:
                report(client.proxy, route, changes)
    budget: RetryBudget | None = route.budget
    if budget is not None:
        budget.request_finished()
        if ex.retry_held:
            release_retry(ex)


def release_retry(ex: Exchange) -> None:
    """Give back the retry slot `ex` holds (its retry ended, or will not happen)."""
    if ex.retry_held:
        ex.retry_held = False
        route = ex.route
        if route is not None and route.budget is not None:
            route.budget.retry_finished()


def tick(proxy: Proxy, now: float) -> None:
    """Expire failure marks and ejections of every peer group (the proxy's housekeeping, every 50 ms)."""
    for route in proxy.groups:
        lb: PeerGroup | None = route.lb
        if lb is not None:
            changes = lb.tick(now)
            if changes:
                report(proxy, route, changes)


def report(proxy: Proxy, route: RouteEntry, changes: list[Change[str]]) -> None:
    """Log outlier ejections and returns, and keep them as events for the control plane."""
    for change in changes:
        why = change.reason.value.replace("_", " ")
        if change.ejected:
            span = (change.until or change.at) - change.at
            reason = f"route {route.name}: ejected for {span:g} s by outlier detection ({why})"
            log.warning("%s: %s", change.peer, reason)
            _event(proxy, "instance.ejected", change.peer, reason, "warning", route.name, change.reason.value)
        else:
            reason = f"route {route.name}: back in rotation after its ejection time"
            log.info("%s: %s", change.peer, reason)
            _event(proxy, "instance.restored", change.peer, reason, "info", route.name, change.reason.value)


def health_event(proxy: Proxy, route: RouteEntry, change: HealthChange, detail: str) -> None:
    """Log an active health check's verdict on a peer, and keep it as an event."""
    if change.up and change.first:
        reason = f"route {route.name}: new instance passed its first active health check ({detail}); in rotation"
        log.info("%s: %s", change.peer, reason)
        _event(proxy, "instance.admitted", change.peer, reason, "info", route.name, "health_check")
    elif change.up:
        reason = f"route {route.name}: active health check passed {change.run} times; back in rotation"
        log.info("%s: %s", change.peer, reason)
        _event(proxy, "instance.restored", change.peer, reason, "info", route.name, "health_check")
    else:
        reason = f"route {route.name}: active health check failed {change.run} times ({detail}); out of rotation"
        log.warning("%s: %s", change.peer, reason)
        _event(proxy, "instance.ejected", change.peer, reason, "warning", route.name, "health_check")


def _event(proxy: Proxy, kind: str, subject: str, reason: str, level: str, route: str, why: str) -> None:
    labels = {"route": route, "reason": why}
    proxy.events.append(
        EventRecord(time=time.time(), kind=kind, subject=subject, reason=reason, level=level, labels=labels)
    )


_KEYS: dict[str, tuple[str, bytes]] = {}


def request_key(client: ClientConnection, ex: Exchange, hash_on: str) -> bytes | None:
    """The bytes a consistent-hash policy hashes for `ex`: client IP, path (without query), route name, a
    header's or a cookie's value; None when the request has no such header or cookie (the pick is random)."""
    if hash_on == "ip":
        return client.client_ip
    if hash_on == "path":
        path = ex.path
        q = path.find(b"?")
        return path if q < 0 else path[:q]
    if hash_on == "route":
        return ex.route.name.encode() if ex.route is not None else None
    parsed = _KEYS.get(hash_on)
    if parsed is None:
        kind, _, name = hash_on.partition(":")
        parsed = _KEYS[hash_on] = (kind, name.strip().lower().encode())
    kind, wanted = parsed
    lines = ex.lines
    if kind == "header":
        if wanted == b"x-forwarded-for":  # kept aside by the parser, not in ex.lines
            return ex.xff
        for i in range(0, len(lines), 4):
            if lines[i].lower() == wanted:
                return lines[i + 2]
        return None
    for i in range(0, len(lines), 4):  # cookie
        if lines[i].lower() == b"cookie":
            for part in lines[i + 2].split(b";"):
                k, eq, v = part.strip().partition(b"=")
                if eq and k.lower() == wanted:
                    return v
    return None
