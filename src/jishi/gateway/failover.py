"""Carrying out the failover decision for one failed try (the decision itself is `jishi.core.retry.decide`).

A try that fails at connect, or whose connection was lost before any response byte while the request is
idempotent and its body is still kept (≤ 64 KiB), is retried on another peer, up to the route's `retries`; the
failed peer is marked down in its balancer for a short time (in the route's current table too, if it was
rebuilt meanwhile). A pooled connection that turns out to be closed by the instance is retried once on a
fresh connection to the same peer without counting a try. Non-idempotent requests are not resent once sent.

A route's `retry` section widens and bounds this: what is retried (`on`: also per-try timeouts and 502/503/504/
5xx answers, whose head is then dropped, never relayed — `retry_status`), how often (`attempts`), whether
non-idempotent requests may be resent, a full-jitter backoff between tries (`loop.call_later`, the proxy's
`rng`), and a retry budget: when the route's retries in flight reach their share of its tries in flight, the
failure goes to the client as it is. The route's total `timeout` vetoes any retry once it has passed (504).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from jishi.core.retry import DEFAULT_ON, Action, Attempt, Failure, decide, fallback
from jishi.gateway import balancing, dispatch
from jishi.gateway.policy_build import REPLACED

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.core.routing import RouteEntry
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.upstream import UpstreamConnection

__all__ = ["after_failure", "allow_retry", "deadline_passed", "give_up", "mark_failed", "retry_status"]

log = logging.getLogger(__name__)


def _attempt(
    ex: Exchange, route: RouteEntry, failure: Failure, *, reused: bool, got_bytes: bool, status: int = 0
) -> Attempt:
    rules = route.retry
    return Attempt(
        failure=failure,
        response_started=ex.resp_started,
        got_bytes=got_bytes,
        reused=reused,
        idempotent=ex.idempotent,
        replayable=ex.replayable,
        stale_retried=ex.stale_retry,
        tries=ex.tries,
        retries=route.retries,
        retry_on=rules.on if rules is not None else DEFAULT_ON,
        non_idempotent=rules.non_idempotent if rules is not None else False,
        status=status,
    )


def after_failure(
    client: ClientConnection,
    ex: Exchange,
    peer: Peer,
    failure: Failure,
    message: str,
    *,
    reused: bool,
    got_bytes: bool,
    timed_out: bool,
) -> None:
    """A try failed: carry out what `jishi.core.retry.decide` says."""
    route = ex.route
    assert route is not None
    action = decide(_attempt(ex, route, failure, reused=reused, got_bytes=got_bytes))
    if action is Action.RETRY_OTHER:
        action = allow_retry(client, ex, route, failure)
    if action is Action.ABORT:
        log.warning("route %s: instance %s broke off a response: %s", route.name, peer.key, message)
        ex.resp_close = True
        if ex.held:  # the route's policies count it as the failure it is (a 502), not as the status relayed
            ex.failed_status = 502
            ex.held |= REPLACED
        client.finish(ex)
    elif action is Action.RETRY_FRESH:
        ex.stale_retry = True  # a pooled connection the instance had closed: try a fresh one
        dispatch.try_peer(client, ex, peer)
    elif action is Action.FAIL:
        ex.error = message
        if failure is Failure.TIMEOUT:
            if ex.deadline and client.loop.time() >= ex.deadline:
                deadline_passed(client, ex)
            else:
                client.error(ex, 504, "upstream_timeout", f"instance {peer.key}: {message}")
        else:
            client.error(ex, 502, "upstream_failed", f"instance {peer.key}: {message}")
    else:  # RETRY_OTHER or GIVE_UP: the peer looks down
        ex.error = f"{peer.address}:{peer.port}: {message}" if failure is not Failure.CONNECT else message
        ex.last_timeout = timed_out or failure is Failure.TIMEOUT
        mark_failed(client, ex, peer)
        if ex.tried is None:
            ex.tried = []
        ex.tried.append(peer)
        if action is Action.RETRY_OTHER:
            _retry(client, ex, route)
        elif ex.deadline and ex.last_timeout and client.loop.time() >= ex.deadline:
            deadline_passed(client, ex)
        else:
            give_up(client, ex)


def retry_status(client: ClientConnection, ex: Exchange, conn: UpstreamConnection, status: int) -> bool:
    """The instance on `conn` answered `status`, which the route retries on. True: the try ended, its response is
    dropped and the request goes to another peer; False: the response is relayed as usual."""
    route = ex.route
    peer = ex.peer
    assert route is not None and peer is not None
    action = decide(_attempt(ex, route, Failure.STATUS, reused=conn.reused, got_bytes=False, status=status))
    if action is not Action.RETRY_OTHER:
        return False
    balancing.end(client, ex, status)
    if allow_retry(client, ex, route, Failure.STATUS) is not Action.RETRY_OTHER:
        return False
    ex.error = f"{peer.address}:{peer.port}: answered {status}"
    ex.last_timeout = False
    conn.abort()  # the rest of this response is not wanted
    ex.conn = None
    if ex.tried is None:
        ex.tried = []
    ex.tried.append(peer)
    _retry(client, ex, route)
    return True


def allow_retry(client: ClientConnection, ex: Exchange, route: RouteEntry, failure: Failure) -> Action:
    """RETRY_OTHER if the total timeout and the retry budget allow another try (taking a budget slot), else what
    the failure becomes without it."""
    if ex.deadline and client.loop.time() >= ex.deadline:
        return fallback(failure)
    budget = route.budget
    if budget is not None:
        if not budget.try_retry():
            log.info(
                "route %s: retry budget spent (%d retries for %d tries in flight); not retrying",
                route.name,
                budget.active_retries,
                budget.active_requests,
            )
            return fallback(failure)
        ex.retry_held = True
    return Action.RETRY_OTHER


def _retry(client: ClientConnection, ex: Exchange, route: RouteEntry) -> None:
    """The next try, at once or after the route's backoff."""
    rules = route.retry
    delay = rules.backoff(ex.tries, client.proxy.rng) if rules is not None else 0.0
    if ex.deadline:
        delay = min(delay, max(0.0, ex.deadline - client.loop.time()))
    if delay <= 0:
        dispatch.try_peer(client, ex, None)
    else:
        client.loop.call_later(delay, _retry_later, client, ex)


def _retry_later(client: ClientConnection, ex: Exchange) -> None:
    if ex.finished or client.closed or ex is not client.active:
        balancing.release_retry(ex)  # the client went away while the retry waited
        return
    dispatch.try_peer(client, ex, None)
    client.flush()


def give_up(client: ClientConnection, ex: Exchange) -> None:
    if ex.tries == 0:
        name = ex.route.name if ex.route is not None else "?"
        client.error(ex, 503, "no_healthy_instance", f"route {name!r} has no healthy instance")
    elif ex.last_timeout:
        client.error(ex, 504, "upstream_timeout", f"{ex.tries} tries failed; last: {ex.error}")
    else:
        client.error(ex, 502, "upstream_unavailable", f"{ex.tries} tries failed; last: {ex.error}")


def deadline_passed(client: ClientConnection, ex: Exchange) -> None:
    """The route's total timeout passed before an answer came: 504."""
    total = ex.route.total_timeout if ex.route is not None else 0.0
    last = f"; last: {ex.error}" if ex.error else ""
    message = f"no answer within the route's timeout of {total:g} s ({ex.tries} tries{last})"
    client.error(ex, 504, "upstream_timeout", message)


def mark_failed(client: ClientConnection, ex: Exchange, peer: Peer) -> None:
    now = client.loop.time()
    route = ex.route
    assert route is not None
    if peer.failed_until <= now:
        log.warning("route %s: instance %s at %s:%d failed (%s)", route.name, peer.key, *peer.addr, ex.error)
    current = client.proxy.table.routes.get(route.name)
    for entry in (route,) if current is None or current is route else (route, current):
        if entry.lb is not None:
            same = entry.lb.get(peer.key)
            if same is not None:
                entry.lb.mark_failed(same, now)
        else:
            same = peer if entry is route else entry.balancer.get(peer.key)
            if same is not None:
                entry.balancer.mark_failed(same, now)
