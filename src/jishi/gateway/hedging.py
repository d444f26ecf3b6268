"""Request hedging on a route with a `hedge` section: a slow try gets a twin on another instance; the first head wins.

`dispatch.proceed` arms hedging for an idempotent request on such a route (`arm`): `delay` after the first try
started, the route's `HedgeTimer` fires it (one loop timer per route, not one per request: every request of a
route waits the same `delay`, so a FIFO queue is in due order; a request that got its answer is skipped there).
If by then no response head has come, the request body is complete and kept (replayable), the route's total
timeout has not passed and another instance exists (never one already tried or in flight), the retry budget is
asked (`jishi.core.resilience.Hedge.try_hedge`: a hedge holds one retry slot) and the same request is sent to
that instance — again every `delay`, up to `max_hedges`.

The exchange's own fields (`ex.conn`, `ex.peer`, `ex.tracked`, `ex.try_start`, `ex.retry_held`) always describe
its *current* try; each hedge in flight is a `HedgeTry` holding the same five fields, swapped into the exchange
for `jishi.gateway.balancing.begin` / `end` so the accounting is the one every try gets. The instance connection
of each try carries a tag (`UpstreamConnection.hedged`): the `Hedging` for the current try, the `HedgeTry` for
a hedge. The upstream side calls:

    on_head(conn)           a response head arrived on a tagged connection: it wins, the other tries are
                            aborted (their connections are not pooled) with no verdict for outlier detection
    on_fail(conn, ...)      a hedge failed before its head: its try ends (with its verdict), nothing else
    promote(client, ex, …)  the current try failed while a hedge is in flight: the hedge becomes the current try
                            (no extra retry); False when the route's total timeout has passed (hedges cancelled)
    connected(client, ...)  a hedge's connect finished: send the request, or end the try
    client_gone(conn)       the client went away: every hedge ends

Hedges sent and hedges that won are counted in the route's `counters` (`hedges_sent`, `hedges_won`).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from jishi.core.retry import Failure
from jishi.gateway import balancing, failover

if TYPE_CHECKING:
    import asyncio

    from jishi.core.balancer import Peer
    from jishi.core.resilience import Hedge, HedgePolicy
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.upstream import UpstreamConnection

__all__ = ["HedgeTimer", "HedgeTry", "Hedging", "arm", "client_gone", "connected", "on_fail", "on_head", "promote"]

log = logging.getLogger(__name__)


class HedgeTimer:
    """A route's hedging policy and its queue of requests waiting for their next hedge, in due order."""

    __slots__ = ("due", "loop", "policy", "timer")

    def __init__(self, policy: HedgePolicy) -> None:
        self.policy = policy
        self.due: deque[tuple[float, Hedging]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, loop: asyncio.AbstractEventLoop, at: float, h: Hedging) -> None:
        """`h` is due at loop time `at` (never before what is queued already: the delay is the route's)."""
        self.due.append((at, h))
        if self.timer is None:
            self.loop = loop
            self.timer = loop.call_at(at, self._run)

    def _run(self) -> None:
        self.timer = None
        loop = self.loop
        assert loop is not None
        now = loop.time()
        due = self.due
        while due:
            at, h = due[0]
            if at > now:  # (the loop's timer may fire a little early)
                self.timer = loop.call_at(at, self._run)
                return
            due.popleft()
            try:
                _fire(h)
            except Exception:  # one request's failure must not stop the others' hedges
                log.exception("route hedging failed for one request")


class Hedging:
    """One request's hedging: its `Hedge` (when the next is due), the route's timer and the hedges in flight."""

    __slots__ = ("client", "ex", "hedge", "timer", "tries")

    def __init__(self, client: ClientConnection, ex: Exchange, hedge: Hedge, timer: HedgeTimer) -> None:
        self.client = client
        self.ex = ex
        self.hedge = hedge
        self.timer = timer
        self.tries: list[HedgeTry] = []


class HedgeTry:
    """A hedge in flight: the per-try fields of `Exchange`, for a try that is not (yet) the current one."""

    __slots__ = ("conn", "peer", "retry_held", "state", "tracked", "try_start")

    def __init__(self, state: Hedging, peer: Peer, retry_held: bool) -> None:
        self.state = state
        self.peer: Peer | None = peer
        self.conn: UpstreamConnection | None = None
        self.tracked = False
        self.try_start = 0.0
        self.retry_held = retry_held


def arm(client: ClientConnection, ex: Exchange, timer: HedgeTimer, now: float) -> None:
    """The first try of `ex` started at `now` on a route that hedges: the first hedge is due `delay` later."""
    hedge = timer.policy.start(now)
    h = Hedging(client, ex, hedge, timer)
    ex.hedge = h
    if ex.conn is not None:
        ex.conn.hedged = h
    timer.add(client.loop, now + timer.policy.delay, h)  # = hedge.next_at


def _swap(ex: Exchange, t: HedgeTry) -> None:
    ex.conn, t.conn = t.conn, ex.conn
    ex.peer, t.peer = t.peer, ex.peer
    ex.tracked, t.tracked = t.tracked, ex.tracked
    ex.try_start, t.try_start = t.try_start, ex.try_start
    ex.retry_held, t.retry_held = t.retry_held, ex.retry_held


def _live(h: Hedging) -> bool:
    client, ex = h.client, h.ex
    return not (ex.finished or client.closed or ex is not client.active or ex.resp_started)


def _fire(h: Hedging) -> None:
    client, ex = h.client, h.ex
    if not _live(h):
        _cancel_all(h)
        ex.hedge = None  # (the two refer to each other: let them go without the cycle collector)
        return
    route = ex.route
    assert route is not None
    now = client.loop.time()
    hedge = h.hedge
    if not ex.tracked or not ex.req_done or not ex.replayable:
        return  # no try in flight (a retry waits its backoff), or the body is not complete and kept: no hedge
    if ex.deadline and now >= ex.deadline:
        return
    if hedge.next_at is None:
        if not h.tries:
            ex.hedge = None  # settled: nothing left to hedge
        return
    if now < hedge.next_at:
        return
    exclude: list[Peer] = [t.peer for t in h.tries if t.peer is not None]
    if ex.peer is not None:
        exclude.append(ex.peer)
    if ex.tried:
        exclude += ex.tried
    peer = balancing.pick(client, ex, route, now, exclude)
    if peer is None:
        return  # no other instance to hedge on
    budget = route.budget
    if not hedge.try_hedge(now, budget):
        if hedge.denied:
            log.info("route %s: retry budget spent; request not hedged", route.name)
        return
    t = HedgeTry(h, peer, budget is not None)
    h.tries.append(t)
    ex.tries += 1
    route.counters.hedges_sent += 1
    if ex.conn is not None:
        ex.conn.hedged = h
    _swap(ex, t)
    balancing.begin(ex, route, peer, now)
    _swap(ex, t)
    conn = client.pool.acquire(peer.addr, route.upstream_tls)
    if conn is not None:
        _send(h, t, conn, now)
    else:
        timeout = route.connect_timeout
        if ex.deadline:
            timeout = max(0.001, min(timeout, ex.deadline - now))
        client.proxy.connect(peer.addr, timeout, client, ex, peer)
    if hedge.next_at is not None:
        h.timer.add(client.loop, hedge.next_at, h)


def _send(h: Hedging, t: HedgeTry, conn: UpstreamConnection, now: float) -> None:
    ex, route, peer = h.ex, h.ex.route, t.peer
    assert route is not None and peer is not None
    t.conn = conn
    head = ex.head
    if ex.host is None:
        head += b"Host: %s:%d\r\n\r\n" % (peer.address.encode(), peer.port)
    timeout = route.read_timeout
    if ex.deadline:
        timeout = max(0.001, min(timeout, ex.deadline - now))
    conn.send(h.client, b"".join((head, *ex.body)), ex.method == b"HEAD", timeout, now, ex.deadline)
    conn.hedged = t


def _drop(h: Hedging, t: HedgeTry, status: int) -> None:
    """End the hedge `t` (its outcome `status`; 0: no verdict) and abort its connection."""
    if t in h.tries:
        h.tries.remove(t)
    conn = t.conn
    t.conn = None
    ex = h.ex
    _swap(ex, t)
    balancing.end(h.client, ex, status)
    _swap(ex, t)
    if conn is not None:
        conn.hedged = None
        conn.abort()


def _cancel_all(h: Hedging) -> None:
    h.hedge.next_at = None  # Hedge.settle, inlined (skipped when its turn in the route's queue comes)
    if h.tries:
        for t in list(h.tries):
            _drop(h, t, 0)


def on_head(conn: UpstreamConnection) -> bool:
    """A response head arrived on `conn` (tagged): it wins. True: drop this response (its request is over)."""
    tag = conn.hedged
    conn.hedged = None
    if tag.__class__ is Hedging:  # the current try won (the usual case: its answer came before `delay`)
        _cancel_all(tag)
        return False
    assert isinstance(tag, HedgeTry)
    h = tag.state
    if tag not in h.tries or not _live(h):
        if tag in h.tries:
            _drop(h, tag, 0)
        conn.abort()
        return True
    client, ex = h.client, h.ex
    h.tries.remove(tag)
    current = ex.conn
    ex.conn = None
    balancing.end(client, ex, 0)  # the try it beat: no verdict on its instance
    if current is not None:
        current.hedged = None
        current.abort()
    _swap(ex, tag)
    if client.write_paused and conn.transport is not None:
        # (as `dispatch.send` does for a try; a request no longer starts while the buffer is full, so this is
        # defence for a buffer filled by the gateway itself meanwhile)
        conn.transport.pause_reading()
    route = ex.route
    assert route is not None
    route.counters.hedges_won += 1
    _cancel_all(h)
    return False


def on_fail(conn: UpstreamConnection, kind: Failure, message: str) -> bool:
    """`conn` (tagged) failed before its head. True when it was a hedge: its try ended here."""
    tag = conn.hedged
    if not isinstance(tag, HedgeTry):
        return False
    conn.hedged = None
    h = tag.state
    stale = kind is Failure.LOST and conn.reused and not conn.got_bytes
    peer = tag.peer
    if peer is not None:
        log.info("route %s: hedge to %s failed: %s", h.ex.route.name if h.ex.route else "?", peer.key, message)
    _drop(h, tag, 0 if stale else 504 if kind is Failure.TIMEOUT else 502)
    return True


def promote(client: ClientConnection, ex: Exchange, peer: Peer, kind: Failure, message: str, stale: bool) -> bool:
    """The current try (on `peer`) failed: a hedge in flight becomes the current try. False: go on as usual."""
    h = ex.hedge
    if h is None or not h.tries:
        return False
    if ex.deadline and client.loop.time() >= ex.deadline:
        _cancel_all(h)
        return False
    if not stale:
        ex.error = f"{peer.address}:{peer.port}: {message}"
        ex.last_timeout = kind is Failure.TIMEOUT
        failover.mark_failed(client, ex, peer)
        if ex.tried is None:
            ex.tried = []
        ex.tried.append(peer)
    balancing.release_retry(ex)
    t = h.tries.pop(0)
    _swap(ex, t)
    if ex.conn is not None:
        ex.conn.hedged = h
    return True


def connected(
    client: ClientConnection, ex: Exchange, peer: Peer, conn: UpstreamConnection | None, error: BaseException | None
) -> bool:
    """A connect for `ex` finished. True: it was a hedge's, and is dealt with here."""
    h = ex.hedge
    assert h is not None
    for t in h.tries:
        if t.peer is peer and t.conn is None:
            break
    else:
        if not _live(h):
            _cancel_all(h)
        return False
    if not _live(h):
        _drop(h, t, 0)
        if conn is not None:
            client.pool.release(conn)
        return True
    if conn is None:
        timed_out = isinstance(error, TimeoutError)
        log.info("route %s: hedge connect to %s failed: %s", ex.route.name if ex.route else "?", peer.key, error)
        _drop(h, t, 504 if timed_out else 503)
        return True
    _send(h, t, conn, client.loop.time())
    return True


def client_gone(conn: UpstreamConnection) -> None:
    """The client of the request on `conn` went away: end every hedge."""
    tag = conn.hedged
    conn.hedged = None
    h = tag.state if isinstance(tag, HedgeTry) else tag
    if isinstance(h, Hedging):
        _cancel_all(h)
