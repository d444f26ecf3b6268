"""Carrying out the failover decision for one failed try (the decision itself is `jishi.core.retry.decide`).

A try that fails at connect, or whose connection was lost before any response byte while the request is
idempotent and its body is still kept (≤ 64 KiB), is retried on another peer, up to the route's `retries`; the
failed peer is marked down in the balancer for a short time (in the route's current table too, if it was
rebuilt meanwhile). A pooled connection that turns out to be closed by the instance is retried once on a
fresh connection to the same peer without counting a try. Non-idempotent requests are not resent once sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from jishi.core.retry import Action, Attempt, Failure, decide
from jishi.gateway import dispatch

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange

__all__ = ["after_failure", "give_up", "mark_failed"]

log = logging.getLogger(__name__)


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
    action = decide(
        Attempt(
            failure=failure,
            response_started=ex.resp_started,
            got_bytes=got_bytes,
            reused=reused,
            idempotent=ex.idempotent,
            replayable=ex.replayable,
            stale_retried=ex.stale_retry,
            tries=ex.tries,
            retries=route.retries,
        )
    )
    if action is Action.ABORT:
        log.warning("route %s: instance %s broke off a response: %s", route.name, peer.key, message)
        ex.resp_close = True
        client.finish(ex)
    elif action is Action.RETRY_FRESH:
        ex.stale_retry = True  # a pooled connection the instance had closed: try a fresh one
        dispatch.try_peer(client, ex, peer)
    elif action is Action.FAIL:
        ex.error = message
        if failure is Failure.TIMEOUT:
            client.error(ex, 504, "upstream_timeout", f"instance {peer.key}: {message}")
        else:
            client.error(ex, 502, "upstream_failed", f"instance {peer.key}: {message}")
    else:  # RETRY_OTHER or GIVE_UP: the peer looks down
        ex.error = f"{peer.address}:{peer.port}: {message}" if failure is not Failure.CONNECT else message
        ex.last_timeout = timed_out
        mark_failed(client, ex, peer)
        if ex.tried is None:
            ex.tried = []
        ex.tried.append(peer)
        if action is Action.RETRY_OTHER:
            dispatch.try_peer(client, ex, None)
        else:
            give_up(client, ex)


def give_up(client: ClientConnection, ex: Exchange) -> None:
    if ex.tries == 0:
        name = ex.route.name if ex.route is not None else "?"
        client.error(ex, 503, "no_healthy_instance", f"route {name!r} has no healthy instance")
    elif ex.last_timeout:
        client.error(ex, 504, "upstream_timeout", f"{ex.tries} tries failed; last: {ex.error}")
    else:
        client.error(ex, 502, "upstream_unavailable", f"{ex.tries} tries failed; last: {ex.error}")


def mark_failed(client: ClientConnection, ex: Exchange, peer: Peer) -> None:
    now = client.loop.time()
    route = ex.route
    assert route is not None
    if peer.failed_until <= now:
        log.warning("route %s: instance %s at %s:%d failed (%s)", route.name, peer.key, *peer.addr, ex.error)
    route.balancer.mark_failed(peer, now)
    current = client.proxy.table.routes.get(route.name)
    if current is not None and current is not route:
        same = current.balancer.get(peer.key)
        if same is not None:
            current.balancer.mark_failed(same, now)
