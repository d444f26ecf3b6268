"""One try of a call on one instance: send it with httpx, judge the outcome, tell the breaker and the balancer.

A try *fails* when the instance cannot be reached (connect refused or timed out), the exchange breaks or times
out, or the instance answers with one of `failure_statuses` (500, 502, 503, 504 by default). Every try is
recorded on that instance's breaker (success/failure with its duration; a cancelled try gives its permit back),
and a connect failure marks the peer failed in the balancer for `fail_timeout`.

Whether a failed try may be repeated elsewhere (`TryFailed.retryable`): a connect failure always (the request
never reached the instance); anything else only for a `safe` call (an idempotent method, or the caller said so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import httpx

from jishi.client.peers import PeerSet
from jishi.core.balancer import Peer
from jishi.errors import Attempt

__all__ = ["DEFAULT_FAILURE_STATUSES", "IDEMPOTENT_METHODS", "Call", "Sender", "TryFailed"]

log = logging.getLogger(__name__)

DEFAULT_FAILURE_STATUSES = frozenset({500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass
class Call:
    """One logical call: what to send, whether repeating it is safe, and every try made so far."""

    method: str
    path: str
    kwargs: dict[str, Any]
    safe: bool
    attempts: list[Attempt] = field(default_factory=list)
    tried: set[Peer] = field(default_factory=set)

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"


class TryFailed(Exception):
    """A try failed; `attempt` says where and why."""

    def __init__(self, attempt: Attempt, *, retryable: bool, response: httpx.Response | None = None) -> None:
        super().__init__(str(attempt))
        self.attempt = attempt
        self.retryable = retryable
        self.response = response


class Sender:
    """Sends tries to the peers of one service."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        peers: PeerSet,
        *,
        timeout: float,
        failure_statuses: Collection[int],
        clock: Callable[[], float],
        scheme: str = "http",
    ) -> None:
        self.http = http
        self.peers = peers
        self.timeout = timeout
        self.failure_statuses = frozenset(failure_statuses)
        self.clock = clock
        self.scheme = scheme

    @property
    def service(self) -> str:
        return self.peers.service

    def pick(self, call: Call) -> Peer | None:
        """The next peer for `call` (not one it already tried, breaker permitting); breaker refusals are noted."""
        refused: list[Peer] = []
        peer = self.peers.acquire(self.clock(), call.tried, refused)
        for r in refused:
            if r not in call.tried:
                call.tried.add(r)
                call.attempts.append(Attempt(r.key, _addr(r), "circuit breaker open"))
        if peer is not None:
            call.tried.add(peer)
        return peer

    async def send(self, peer: Peer, call: Call) -> httpx.Response:
        """One try of `call` on `peer`, whose breaker permit the caller holds; raises TryFailed."""
        breaker = self.peers.breaker(peer)
        url = f"{self.scheme}://{peer.address}:{peer.port}{call.path}"
        started = self.clock()
        try:
            response = await self.http.request(call.method, url, timeout=self.timeout, **call.kwargs)
        except httpx.TransportError as exc:
            now = self.clock()
            if breaker is not None:
                breaker.on_failure(now, now - started)
                self.peers.log_events(peer)
            connect = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            if connect:
                self.peers.balancer.mark_failed(peer, now)
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            attempt = Attempt(peer.key, _addr(peer), reason)
            call.attempts.append(attempt)
            log.info("%s: %s on %s failed: %s", self.service, call.what, peer.key, reason)
            raise TryFailed(attempt, retryable=connect or call.safe) from exc
        except BaseException:  # cancelled (a hedge or fork lost), or a misuse error: the outcome does not count
            if breaker is not None:
                breaker.release(self.clock())
            raise
        now = self.clock()
        if response.status_code in self.failure_statuses:
            if breaker is not None:
                breaker.on_failure(now, now - started)
                self.peers.log_events(peer)
            attempt = Attempt(peer.key, _addr(peer), f"answered {response.status_code}", response.status_code)
            call.attempts.append(attempt)
            log.info("%s: %s on %s answered %d", self.service, call.what, peer.key, response.status_code)
            raise TryFailed(attempt, retryable=call.safe, response=response)
        if breaker is not None:
            breaker.on_success(now, now - started)
            self.peers.log_events(peer)
        return response


def _addr(peer: Peer) -> str:
    return f"{peer.address}:{peer.port}"
