"""A route's policy chain in the gateway: what happens to a request between routing and picking a peer.

`attach(table, previous, proxy)` gives each route of a new routing table its `RoutePolicy` (kept from the
previous table while the route record is unchanged, so breaker and limiter state survive instance changes).
A route with no policy section gets none and pays nothing. The hot path calls three methods:

    admit(client, ex, now) -> bool      before a peer is picked (the caller has set `ex.policy` to it): True goes
                                        on (`dispatch.proceed`); False means the policy answered (429, 503, a
                                        fallback) or holds the request (a bulkhead queue, a Redis decision) and
                                        calls `dispatch.proceed` itself later
    done(client, ex, now)               the exchange it admitted is over (its status and timings are final)
    on_error(client, ex, status, code, message) -> bool
                                        the gateway is about to answer `ex` with an error: True if the policy
                                        answered instead (a configured fallback)

The chain, outermost first (each stage only when its section is set):

    rate_limit   429 rate_limited + Retry-After     local limiter per key, or Redis (`policy_limit`)
    concurrency  503 overloaded                     adaptive limit (AIMD / gradient), learns from each response
    bulkhead     503 bulkhead_full                  max concurrent; a bounded queue waits up to max_wait
    breaker      503 circuit_open + Retry-After     one outcome per exchange: its final status (retries
                                                    counted once) and its duration from the permit
    rewrite      path and request headers now, response headers in `relay.head` (`policy_rewrite`)
    → retries and load balancing (dispatch, failover) → fallback (`on_error`, for the listed reasons)

What an exchange holds (a concurrency slot, a bulkhead slot or queue ticket, a breaker permit) is recorded in
`ex.held` and given back in `done`, whatever ended it (a response, an error, the client leaving). A request the
chain itself refused gives its permits back without an outcome. Breaker state changes are appended to
`proxy.events` (kind "route.breaker", subject the route) and logged. `state()` is read by the report code.
A route whose policy cannot be built (a section fails; logged as an ERROR naming route and section) is not served
unprotected: its requests are refused with 503 `policy_error`.
A replaced route's policy still serves the requests it holds: those waiting in its bulkhead queue get the slots
its running requests give back (or time out at `max_wait`), and are then closed with it.
`close(table)` ends the policies of a table (Redis clients, access logs) when the proxy stops.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from jishi.gateway.policy_build import ROUTE_SECTIONS, Compiled, compile_route
from jishi.gateway.policy_chain import RoutePolicy

if TYPE_CHECKING:
    from jishi.core.routing import RoutingTable
    from jishi.gateway.proxy import Proxy

__all__ = ["ROUTE_SECTIONS", "RoutePolicy", "attach", "close"]

log = logging.getLogger(__name__)

_closing: set[asyncio.Task[None]] = set()  # policies of replaced routes being closed (`close` awaits them)


def attach(table: RoutingTable, previous: RoutingTable | None, proxy: Proxy) -> None:
    """Give each route of `table` its policy chain; policies of routes gone or changed are closed."""
    old_routes = previous.routes if previous is not None else {}
    workers = proxy.workers
    for name, entry in table.routes.items():
        spec: Any = entry.spec
        if spec is None or not any(getattr(spec, s, None) is not None for s in ROUTE_SECTIONS):
            continue
        old = old_routes.get(name)
        if old is not None and old.policy is not None and old.spec == spec:
            entry.policy = old.policy
            continue
        try:
            entry.policy = RoutePolicy(compile_route(spec, workers), proxy)
        except Exception:
            log.exception("route %s: its policies could not be set up; its requests are refused (503)", name)
            entry.policy = RoutePolicy(Compiled(name, spec, broken=("route",)), proxy)
    kept = {id(entry.policy) for entry in table.routes.values() if entry.policy is not None}
    for entry in old_routes.values():
        if entry.policy is not None and id(entry.policy) not in kept:
            task = proxy.loop.create_task(entry.policy.aclose(drain=True))
            _closing.add(task)
            task.add_done_callback(_closing.discard)


async def close(table: RoutingTable) -> None:
    """Close the policies of `table` and of routes replaced before (for the proxy's stop)."""
    for entry in table.routes.values():
        if entry.policy is not None:
            await entry.policy.aclose()
    loop = asyncio.get_running_loop()
    mine = [task for task in _closing if task.get_loop() is loop]
    if mine:
        await asyncio.gather(*mine, return_exceptions=True)
