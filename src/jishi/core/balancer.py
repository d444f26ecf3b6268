"""Smooth weighted round-robin over a set of peers, with a backup tier and passive failure marks.

Theory of operation
-------------------
This is nginx's smooth weighted round-robin (`ngx_http_upstream_get_peer`). Every peer has a fixed `weight`
and a running `current` weight. To pick one:

    for each available peer:  current += weight;  total += weight
    best = the peer with the largest current (the first one on ties)
    best.current -= total

Over any window of sum(weights) consecutive picks (with a fixed set of available peers) each peer is picked
exactly `weight` times, and the picks of heavy peers are spread out instead of bunched (weights 5,1,1 give
a a b a c a a, not a a a a a b c).

Peers come in two tiers. Primary peers take all traffic; the `backup` tier is consulted only when no primary
peer is available (nginx's `backup` semantics). A peer is *unavailable* for one pick when the caller excludes
it (a retry must go to another peer than the ones already tried for that request) or when it was marked
failed less than `fail_timeout` seconds ago (a passive mark: the connection was refused or reset). When every
peer that is not excluded carries a failure mark, the marks are ignored for that pick ("panic"), because a
guess that everything is down is worse than one more try; only exclusion can make `pick` return None.

A mark is cleared by `mark_ok` (the shell calls it when the registry reports the instance again) or by its
expiry. Nothing here reads a clock: `now` is an argument of `pick` and `mark_failed`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jishi.core.lb.peers import Endpoint

__all__ = ["DEFAULT_FAIL_TIMEOUT", "Balancer", "Peer", "PeerSpec"]

DEFAULT_FAIL_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """What a peer is: its identity, address and place in the rotation. `key` is unique in one balancer."""

    key: str
    address: str
    port: int
    weight: int = 1
    backup: bool = False
    generation: int = 0  # changes when the registry re-reports the peer; a new generation clears failure marks


class Peer:
    """A peer with its balancing state. The shell keeps references to peers while it talks to them."""

    __slots__ = (
        "addr",
        "address",
        "backup",
        "current",
        "endpoint",
        "failed_until",
        "generation",
        "key",
        "port",
        "spec",
        "weight",
    )

    def __init__(self, spec: PeerSpec) -> None:
        self.spec = spec
        self.key = spec.key
        self.address = spec.address
        self.port = spec.port
        self.addr = (spec.address, spec.port)
        self.weight = spec.weight
        self.backup = spec.backup
        self.generation = spec.generation
        self.current = 0
        self.failed_until = 0.0
        self.endpoint: Endpoint | None = None  # its `jishi.core.lb.Endpoint` when a `PeerGroup` balances it

    def __repr__(self) -> str:
        tier = " backup" if self.backup else ""
        return f"Peer({self.key} {self.address}:{self.port} w={self.weight}{tier})"


class Balancer:
    """Smooth weighted round-robin over primary peers, falling back to the backup tier; see the module doc."""

    __slots__ = ("_backup", "_primary", "fail_timeout", "peers")

    def __init__(
        self,
        specs: Iterable[PeerSpec] = (),
        *,
        fail_timeout: float = DEFAULT_FAIL_TIMEOUT,
        previous: Balancer | None = None,
    ) -> None:
        """Peers from `specs`; the state of any peer also in `previous` (same key, address and port) is kept."""
        if fail_timeout < 0:
            raise ValueError(f"fail_timeout must be >= 0, not {fail_timeout}")
        self.fail_timeout = fail_timeout
        old = {p.key: p for p in previous.peers} if previous is not None else {}
        peers: list[Peer] = []
        seen: set[str] = set()
        for spec in specs:
            if spec.key in seen:
                raise ValueError(f"peer key {spec.key!r} appears twice")
            if spec.weight < 1:
                raise ValueError(f"peer {spec.key!r}: weight must be >= 1, not {spec.weight}")
            seen.add(spec.key)
            peer = Peer(spec)
            prior = old.get(spec.key)
            if prior is not None and prior.address == spec.address and prior.port == spec.port:
                peer.current = prior.current
                if prior.generation == spec.generation:
                    peer.failed_until = prior.failed_until
            peers.append(peer)
        self.peers: tuple[Peer, ...] = tuple(peers)
        self._primary = tuple(p for p in peers if not p.backup)
        self._backup = tuple(p for p in peers if p.backup)

    def __len__(self) -> int:
        return len(self.peers)

    def pick(self, now: float, exclude: Collection[Peer] | None = None) -> Peer | None:
        """The next peer, skipping `exclude` and (unless all are marked) failed peers; None if none is left."""
        if not exclude:
            # The usual pick, inlined: one round of smooth weighted round-robin over the primary peers that are up.
            best: Peer | None = None
            total = 0
            for p in self._primary:
                if p.failed_until <= now:
                    p.current += p.weight
                    total += p.weight
                    if best is None or p.current > best.current:
                        best = p
            if best is not None:
                best.current -= total
                return best
            peer = None
            if self._backup:
                peer = _swrr(self._backup, now, None)
        else:
            peer = _swrr(self._primary, now, exclude)
            if peer is None and self._backup:
                peer = _swrr(self._backup, now, exclude)
        if peer is None:
            # Panic: every candidate is marked failed. Try them anyway rather than refuse the request.
            peer = _swrr(self._primary, None, exclude) or _swrr(self._backup, None, exclude)
        return peer

    def mark_failed(self, peer: Peer, now: float) -> None:
        """The shell could not talk to `peer`: skip it until `now + fail_timeout` (or until `mark_ok`)."""
        peer.failed_until = now + self.fail_timeout

    def mark_ok(self, peer: Peer) -> None:
        """Clear the failure mark of `peer`."""
        peer.failed_until = 0.0

    def get(self, key: str) -> Peer | None:
        """The peer with `key`, if this balancer has it."""
        for peer in self.peers:
            if peer.key == key:
                return peer
        return None

    def available(self, now: float) -> list[Peer]:
        """The peers a pick at `now` would choose among (primary ones, or the backup tier if none is up)."""
        up = [p for p in self._primary if p.failed_until <= now]
        return up or [p for p in self._backup if p.failed_until <= now]


def _swrr(peers: tuple[Peer, ...], now: float | None, exclude: Collection[Peer] | None) -> Peer | None:
    """One round of smooth weighted round-robin over `peers`; `now` None ignores failure marks."""
    best: Peer | None = None
    total = 0
    for peer in peers:
        if now is not None and peer.failed_until > now:
            continue
        if exclude and peer in exclude:
            continue
        peer.current += peer.weight
        total += peer.weight
        if best is None or peer.current > best.current:
            best = peer
    if best is not None:
        best.current -= total
    return best
