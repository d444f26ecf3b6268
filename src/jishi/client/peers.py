"""The instances one client balances over: a `Balancer` plus one circuit breaker per instance.

Theory of operation
-------------------
`PeerSet.refresh()` compares the directory's `generation(service)` with the one it last built from and, only when
it changed, rebuilds the balancer from the instances in rotation (keeping each surviving peer's round-robin state
and failure mark) and drops the breakers of instances that left.

`acquire(now, exclude)` asks the balancer for the next peer not in `exclude`; when that peer's breaker refuses
(OPEN, or HALF_OPEN with no probe permit left) it is excluded for this pick and the balancer is asked again, so
traffic moves to the other instances while a breaker is open. It returns the peer with a breaker permit (the
caller must settle it with exactly one of `breaker.on_success/on_failure/release`) or None, with the instances
refused by their breaker listed in `refused`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from jishi.client.directory import ServiceDirectory
from jishi.core.balancer import Balancer, Peer, PeerSpec
from jishi.core.resilience import Breaker, BreakerConfig
from jishi.registry.model import Instance

__all__ = ["PeerSet"]

log = logging.getLogger(__name__)


class PeerSet:
    """The balancer and breakers of one service as one client sees it."""

    def __init__(
        self,
        directory: ServiceDirectory,
        service: str,
        *,
        breaker: BreakerConfig | None = None,
        fail_timeout: float = 2.0,
    ) -> None:
        self.directory = directory
        self.service = service
        self.breaker_config = breaker
        self.fail_timeout = fail_timeout
        self.balancer = Balancer(fail_timeout=fail_timeout)
        self.instances: dict[str, Instance] = {}
        self.breakers: dict[str, Breaker] = {}
        self._generation = -1

    def refresh(self) -> Balancer:
        """The balancer for the directory's current instances (rebuilt only when they changed)."""
        generation = self.directory.generation(self.service)
        if generation != self._generation:
            self._generation = generation
            current = self.directory.instances(self.service)
            self.instances = {i.id: i for i in current}
            specs = [PeerSpec(i.id, i.address, i.port, weight=i.weight, backup=i.backup) for i in current]
            self.balancer = Balancer(specs, fail_timeout=self.fail_timeout, previous=self.balancer)
            for gone in set(self.breakers) - set(self.instances):
                del self.breakers[gone]
        return self.balancer

    def breaker(self, peer: Peer) -> Breaker | None:
        """The breaker of `peer` (made on first use), or None when the client has no breakers."""
        if self.breaker_config is None:
            return None
        b = self.breakers.get(peer.key)
        if b is None:
            b = self.breakers[peer.key] = Breaker(self.breaker_config)
        return b

    def acquire(self, now: float, exclude: Collection[Peer] = (), refused: list[Peer] | None = None) -> Peer | None:
        """The next peer whose breaker permits a call at `now`; see the module doc."""
        balancer = self.refresh()
        skip = set(exclude)
        while True:
            peer = balancer.pick(now, skip)
            if peer is None:
                return None
            b = self.breaker(peer)
            if b is None or b.try_acquire(now):
                self._log_breaker(peer, b)
                return peer
            self._log_breaker(peer, b)
            if refused is not None:
                refused.append(peer)
            skip.add(peer)

    def all(self) -> list[Peer]:
        """Every peer in rotation (primary and backup)."""
        return list(self.refresh().peers)

    def _log_breaker(self, peer: Peer, b: Breaker | None) -> None:
        if b is None:
            return
        for change in b.drain_events():
            log.warning(
                "%s/%s: circuit breaker %s → %s (%s)",
                self.service,
                peer.key,
                change.old.name,
                change.new.name,
                change.reason,
            )

    def log_events(self, peer: Peer) -> None:
        """Log the state changes of `peer`'s breaker since the last call."""
        self._log_breaker(peer, self.breakers.get(peer.key))
