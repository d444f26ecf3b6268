"""From a parsed request to an instance: route it, pick a peer, get a connection, send the head and body.

    start(client, ex)              a request head is complete and it is this connection's turn: route it, ask
                                   the route's policy chain (`jishi.gateway.policy`) to admit it, then
    proceed(client, ex, now)       pick a peer and send it
    try_peer(client, ex, same)     pick a peer (or retry `same` on a fresh connection) and get it a connection
    connected(client, ex, ...)     the proxy's connect for `ex` finished
    send(client, ex, conn, now)    send the head (and any body so far) on `conn`
    body(client, ex, *pieces)      more of the request body: send it, or keep it until there is a connection

Refusals are answered at once with a JSON error: CONNECT (405), a target that is not a path or whose ".."
segments climb above the root (400; dot segments are otherwise resolved before routing, `jishi.core.paths`), no
route (404), a route without a healthy instance (503). A failed try goes to `jishi.gateway.failover`.

A route without `lb`, `health_check`, `outlier`, `retry` or `timeout` sections takes the fast path: its smooth
round-robin `Balancer` picks, nothing is counted. A `tracked` route picks through `jishi.gateway.balancing` (its
peer group and the request's hash key) and reports each try's start and end there; its total timeout (`timeout`)
caps every connect and read timeout of the request, once it has passed no try starts (504), and a response
still arriving then is cut off (`jishi.gateway.upstream`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jishi.core.paths import PathAboveRoot
from jishi.core.retry import Failure
from jishi.gateway import balancing, failover, hedging
from jishi.gateway.exchange import REPLAY_LIMIT
from jishi.gateway.headers import origin_form, request_head

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.core.routing import RouteEntry
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.upstream import UpstreamConnection

__all__ = ["body", "connected", "proceed", "send", "start", "try_peer"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def start(client: ClientConnection, ex: Exchange) -> None:
    """Route `ex` and send it to a peer (or answer it with an error)."""
    client.active = ex
    if client.proxy.stopping:
        ex.keep_alive = False
    url = ex.url
    if url[0] != 0x2F:  # not "/..."
        if ex.method == b"CONNECT":
            client.error(ex, 405, "method_not_allowed", "the gateway does not tunnel CONNECT requests")
            return
        origin = origin_form(ex)
        if origin is None:
            client.error(ex, 400, "bad_request", f"request target {ex.url[:200]!r} is not a path")
            return
        url = origin
    try:
        found = client.proxy.table.route_for(ex.host, url)
    except PathAboveRoot as e:
        client.error(ex, 400, "bad_request", str(e))
        return
    if found is None:
        host = (ex.host or b"").decode("latin-1")
        client.error(ex, 404, "no_route", f"no route for host {host!r} and path {url[:200].decode('latin-1')!r}")
        return
    route, ex.path = found
    ex.route = route
    now = client.loop.time()
    policy = route.policy
    if policy is not None:
        ex.policy = policy  # told when `ex` ends, whatever its chain decides
        if not policy.admit(client, ex, now):
            return  # answered (429, 503, a fallback), or waiting for a bulkhead slot: the policy calls `proceed`
    proceed(client, ex, now)


def proceed(client: ClientConnection, ex: Exchange, now: float) -> None:
    """`ex` is routed and admitted by its route's policies: pick a peer and send it there."""
    route = ex.route
    assert route is not None
    tracked = route.tracked
    # Written for every request, tracked or not, so that every exchange gets its attributes in the same order
    # (CPython then keeps sharing one key table among their dicts; a dict of its own costs ~1 µs a request).
    ex.tracked = False
    ex.try_start = now
    if tracked:
        if route.total_timeout:
            ex.deadline = now + route.total_timeout
        lb = route.lb
        if lb is not None and route.hash_on is None:  # balancing.pick without a hash key, one call fewer
            ep = lb.picker.pick(now, client.proxy.rng)
            peer = None if ep is None else ep.target
        else:
            peer = balancing.pick(client, ex, route, now)
    else:
        peer = route.balancer.pick(now)
    if peer is None:
        client.error(ex, 503, "no_healthy_instance", f"route {route.name!r} has no healthy instance")
        return
    if ex.expect_continue and not ex.req_done:
        client.out.append(_CONTINUE)
        client.flush()
    ex.head = request_head(ex, client.forwarded, client.client_ip)
    ex.tries = 1
    ex.peer = peer
    if tracked:  # balancing.begin, inlined (the first try: `ex` is not tracked yet)
        ex.tracked = True
        lb = route.lb
        ep = peer.endpoint
        if lb is not None and ep is not None:
            if lb.counts_only:
                ep.active += 1
            else:
                lb.picker.on_start(ep, now)
        if route.budget is not None:
            route.budget.request_started()
    conn = client.pool.acquire(peer.addr, route.upstream_tls) if ex.replayable else None
    if conn is not None:
        send(client, ex, conn, now)
    else:
        client.proxy.connect(peer.addr, _connect_timeout(ex, route.connect_timeout, now), client, ex, peer)
    if tracked and route.hedge is not None and ex.idempotent and ex.upgrade is None:
        hedging.arm(client, ex, route.hedge, now)


def try_peer(client: ClientConnection, ex: Exchange, same_peer: Peer | None) -> None:
    """Another try: on `same_peer` over a fresh connection, or on the next peer not tried yet."""
    route = ex.route
    assert route is not None
    now = client.loop.time()
    if ex.deadline and now >= ex.deadline:
        balancing.release_retry(ex)
        failover.deadline_passed(client, ex)
        return
    if same_peer is not None:
        peer: Peer | None = same_peer
    else:
        peer = _next_peer(client, ex, route, now)
        if peer is None:
            balancing.release_retry(ex)
            failover.give_up(client, ex)
            return
        ex.tries += 1
        route.counters.retries += 1
    assert peer is not None
    ex.peer = peer
    if route.tracked:
        balancing.begin(ex, route, peer, now)
    fresh = same_peer is not None or not ex.replayable
    conn = None if fresh else client.pool.acquire(peer.addr, route.upstream_tls)
    if conn is not None:
        send(client, ex, conn, now)
    else:
        client.proxy.connect(peer.addr, _connect_timeout(ex, route.connect_timeout, now), client, ex, peer)


def _next_peer(client: ClientConnection, ex: Exchange, route: RouteEntry, now: float) -> Peer | None:
    """A peer for a retry: one not tried yet; on a route with a retry section, failing that, any but the last
    one tried (never the peer that just failed while another exists)."""
    tried = ex.tried
    if route.tracked:
        peer = balancing.pick(client, ex, route, now, tried)
        if peer is None and route.retry is not None and tried and len(tried) > 1:
            peer = balancing.pick(client, ex, route, now, tried[-1:])
        return peer
    peer = route.balancer.pick(now, tried)
    if peer is None and route.retry is not None and tried and len(tried) > 1:
        peer = route.balancer.pick(now, tried[-1:])
    return peer


def _connect_timeout(ex: Exchange, timeout: float, now: float) -> float:
    """The connect timeout of a try, cut short by the request's total timeout."""
    if ex.deadline:
        return max(0.001, min(timeout, ex.deadline - now))
    return timeout


def connected(
    client: ClientConnection, ex: Exchange, peer: Peer, conn: UpstreamConnection | None, error: BaseException | None
) -> None:
    """The proxy's connect for `ex` finished (with a connection or an error)."""
    if ex.hedge is not None and hedging.connected(client, ex, peer, conn, error):
        return
    if ex.finished or client.closed or ex is not client.active or ex.peer is not peer:
        if conn is not None:
            client.pool.release(conn)
        if ex.tracked and ex.peer is peer:
            balancing.end(client, ex, 0)
        return
    if conn is None:
        timed_out = isinstance(error, TimeoutError)
        what = "timed out" if timed_out else f"failed: {error}"
        message = f"connect to {peer.address}:{peer.port} {what}"
        if ex.tracked:
            balancing.end(client, ex, 504 if timed_out else 503)
        if ex.hedge is not None and hedging.promote(client, ex, peer, Failure.CONNECT, message, False):
            return  # a hedge in flight goes on as the request's try
        failover.after_failure(
            client, ex, peer, Failure.CONNECT, message, reused=False, got_bytes=False, timed_out=timed_out
        )
    else:
        send(client, ex, conn, client.loop.time())
        if ex.hedge is not None:
            conn.hedged = ex.hedge  # the current try's connection: its head settles the hedging
    client.flush()


def send(client: ClientConnection, ex: Exchange, conn: UpstreamConnection, now: float) -> None:
    """Send the head and the body received so far on `conn`; the rest of the body follows as it comes."""
    route = ex.route
    assert route is not None and ex.peer is not None
    ex.conn = conn
    head = ex.head
    if ex.host is None:
        head += b"Host: %s:%d\r\n\r\n" % (ex.peer.address.encode(), ex.peer.port)
    if ex.body:
        head = b"".join((head, *ex.body))
        if not ex.replayable:
            ex.body.clear()
    timeout = route.read_timeout
    if ex.deadline:
        timeout = max(0.001, min(timeout, ex.deadline - now))
    conn.send(client, head, ex.method == b"HEAD", timeout, now, ex.deadline)
    if client.paused:
        client.body_sent()
    if client.write_paused and conn.transport is not None:
        conn.transport.pause_reading()


def body(client: ClientConnection, ex: Exchange, *pieces: bytes) -> None:
    """More of the request body (framed for the instance): send it, or keep it until there is a connection.

    It is also kept, up to `REPLAY_LIMIT` bytes in all, for a retry on another instance.
    """
    size = 0
    for piece in pieces:
        size += len(piece)
    ex.body_size += size
    conn = ex.conn
    if conn is not None:
        conn.write(*pieces, size=size)
        if ex.replayable:
            if ex.body_size > REPLAY_LIMIT:
                ex.replayable = False
                ex.body.clear()
            else:
                ex.body.extend(pieces)
        return
    ex.body.extend(pieces)
    if ex.body_size > REPLAY_LIMIT:
        ex.replayable = False
    client.body_waiting(ex.body_size)
