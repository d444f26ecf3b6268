"""A route's policy chain in the gateway: what happens to a request between routing and picking a peer.

`attach(table, previous, proxy)` gives each route of a new routing table its `RoutePolicy` (kept from the
previous table while the route record is unchanged, so breaker and limiter state survive instance changes).
A route with no policy section gets none and pays nothing. The hot path calls three methods:

    admit(client, ex, now) -> bool      before a peer is picked: True goes on (`dispatch.proceed`); False means the
                                        policy answered (429, 503, a fallback) or holds the request (a bulkhead
                                        queue) and calls `dispatch.proceed` itself later
    done(client, ex, now)               the exchange it admitted is over (its status and timings are final)
    on_error(client, ex, status, code, message) -> bool
                                        the gateway is about to answer `ex` with an error: True if the policy
                                        answered instead (a configured fallback)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jishi.core.routing import RoutingTable
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.proxy import Proxy

__all__ = ["RoutePolicy", "attach"]


class RoutePolicy:
    """The policies of one route; see the module doc."""

    def admit(self, client: ClientConnection, ex: Exchange, now: float) -> bool:
        ex.policy = self
        return True

    def done(self, client: ClientConnection, ex: Exchange, now: float) -> None:
        pass

    def on_error(self, client: ClientConnection, ex: Exchange, status: int, code: str, message: str) -> bool:
        return False


def attach(table: RoutingTable, previous: RoutingTable | None, proxy: Proxy) -> None:
    """Give each route of `table` its policy chain (none yet: every section is still to be wired)."""
