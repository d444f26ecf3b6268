"""The peers of one route under a configured load-balancing policy, and why each is in or out of the rotation.

Theory of operation
-------------------
A route with an `lb`, `health_check` or `outlier` section is balanced by a `PeerGroup` instead of the plain
smooth round-robin `jishi.core.balancer.Balancer`. The group wraps one `jishi.core.lb.PeerSet` (weights, backup
tier, panic threshold, slow start) and one picker over it (`round_robin` is `SmoothPicker` below, the others come
from `jishi.core.lb.make_picker`). Each `jishi.core.balancer.Peer` the shell talks to has its `Endpoint` (and the
endpoint's `target` is the peer), so the shell keeps working with peers and addresses.

A peer is out of the rotation for any of four reasons, kept as bits; it is up when none holds:

    FAILED      the shell could not talk to it (connect refused, reset): for `fail_timeout` seconds
    UNHEALTHY   the gateway's active health check failed `fall` times in a row (back after `rise` passes)
    EJECTED     passive outlier detection (`jishi.core.lb.OutlierDetector`) ejected it, for a growing time
    UNCHECKED   new to the route while `wait_for_pass` is on: no active check has passed it yet (Envoy's
                `ignore_new_hosts_until_first_hc`, nginx's `health_check mandatory`)

Taking a peer out or putting it back goes through `PeerSet.set_up`, so a returning peer starts a slow-start ramp,
and the panic threshold decides what happens when too many are out.

Rebuilds: the registry changes often (any instance of any service), so `PeerGroup.build(..., previous=)` returns
the previous group itself when the route's configuration and its peers (key, address, port, weight, tier) are
unchanged: rings, Maglev tables, in-flight counts, EWMA estimates and ramps all survive untouched (a changed
registry generation only clears a FAILED mark). Otherwise a new group is built whose unchanged peers are the
*same* `Peer`/`Endpoint` objects (tries in flight finish on the object they started on, so in-flight counts
stay right) and whose changed peers keep their health, latency and ramp; a peer new to an existing route starts
a slow-start ramp at `now` (and, with `wait_for_pass`, out of the rotation until its first passed check), the
peers of a brand-new route do not: they are the ones the registry reported healthy when the route was made.

Nothing here reads a clock or draws a random number: `now` and `rng` are arguments.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from jishi.core.balancer import DEFAULT_FAIL_TIMEOUT, Peer, PeerSpec
from jishi.core.lb import Change, Endpoint, OutlierConfig, OutlierDetector, PeerSet, Picker, Rng, SlowStart, make_picker
from jishi.core.lb.peers import PickerBase

__all__ = ["EJECTED", "FAILED", "UNCHECKED", "UNHEALTHY", "GroupConfig", "HealthChange", "PeerGroup", "SmoothPicker"]

FAILED, UNHEALTHY, EJECTED, UNCHECKED = 1, 2, 4, 8


class SmoothPicker(PickerBase):
    """nginx's smooth weighted round-robin over the candidates of a `PeerSet` (slow-start weights applied).

    With equal weights that order is plain rotation through the candidates, which takes a counter instead of a
    pass over them; the counter restarts when the candidates change.
    """

    __slots__ = ("_cands", "_next", "current")

    def __init__(self, peers: PeerSet, current: dict[Endpoint, float] | None = None) -> None:
        super().__init__(peers)
        keep = set(peers.endpoints)
        self.current: dict[Endpoint, float] = {ep: c for ep, c in (current or {}).items() if ep in keep}
        self._cands: tuple[Endpoint, ...] = ()
        self._next = 0

    def pick(
        self, now: float, rng: Rng, key: bytes | None = None, exclude: Collection[Endpoint] | None = None
    ) -> Endpoint | None:
        """The next candidate in smooth weighted round-robin order; None if there is none. `key` is ignored."""
        peers = self.peers
        cands = peers.select(exclude).candidates if exclude else peers.candidates
        if not cands:
            return None
        weights = None if not exclude and now >= peers.even_after else peers.weights(cands, now)
        if weights is None and not exclude:
            if cands is not self._cands:
                self._cands, self._next = cands, 0
            i = self._next
            self._next = i + 1 if i + 1 < len(cands) else 0
            return cands[i]
        current = self.current
        best = cands[0]
        best_c = -math.inf
        total = 0.0
        for i, ep in enumerate(cands):
            w = ep.weight if weights is None else weights[i]
            c = current.get(ep, 0.0) + w
            current[ep] = c
            total += w
            if c > best_c:
                best, best_c = ep, c
        current[best] = best_c - total
        return best


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """How a route's peers are balanced (from its `lb` and `outlier` sections)."""

    policy: str = "round_robin"
    slow_start: float = 0.0
    slow_start_aggression: float = 1.0
    panic_threshold: float = 0.5
    outlier: OutlierConfig | None = None
    fail_timeout: float = DEFAULT_FAIL_TIMEOUT
    wait_for_pass: bool = False  # a peer new to the route takes no traffic before an active check passes it


@dataclass(frozen=True, slots=True)
class HealthChange:
    """An active health check took `peer` out of the rotation (`up` False) or put it back."""

    peer: str
    up: bool
    at: float
    run: int  # the consecutive results that made the change
    first: bool = False  # a new peer's first passed check (`wait_for_pass`), not a return from failing checks


def _signature(spec: PeerSpec) -> tuple[str, str, int, int, bool]:
    return (spec.key, spec.address, spec.port, spec.weight, spec.backup)


class PeerGroup:
    """One route's peers, policy, health marks and outlier detector; see the module doc."""

    __slots__ = (
        "_down",
        "_due",
        "_runs",
        "_signature",
        "config",
        "counts_only",
        "outlier",
        "peer_set",
        "peers",
        "picker",
    )

    def __init__(
        self, specs: Sequence[PeerSpec], config: GroupConfig, *, now: float, previous: PeerGroup | None = None
    ):
        self.config = config
        self._signature = tuple(_signature(s) for s in specs)
        old = {p.key: p for p in previous.peers} if previous is not None else {}
        peers: list[Peer] = []
        self._down: dict[str, int] = {}
        self._runs: dict[str, tuple[bool, int]] = {}  # key → (last check passed, how many in a row)
        for spec in specs:
            prior = old.get(spec.key)
            if prior is not None and _signature(prior.spec) == _signature(spec):
                peer = prior
                if prior.generation != spec.generation:
                    peer.failed_until = 0.0
                    peer.generation = spec.generation
            else:
                peer = Peer(spec)
                ep = Endpoint(spec.key, spec.weight, backup=spec.backup, target=peer, since=-math.inf)
                if previous is not None:
                    ep.since = ep.stamp = now  # new to this route: ramp up
                if prior is not None and prior.endpoint is not None:
                    was = prior.endpoint
                    ep.up, ep.since, ep.ewma, ep.stamp = was.up, was.since, was.ewma, was.stamp
                    if prior.generation == spec.generation:
                        peer.failed_until = prior.failed_until
                peer.endpoint = ep
            peers.append(peer)
            if previous is not None:
                self._down[peer.key] = previous._down.get(peer.key, UNCHECKED if config.wait_for_pass else 0)
                if peer.key in previous._runs:
                    self._runs[peer.key] = previous._runs[peer.key]
        self.peers: tuple[Peer, ...] = tuple(peers)
        for peer in peers:
            mask = self._down.get(peer.key, 0)
            if peer.failed_until <= 0:
                mask &= ~FAILED
            self._down[peer.key] = mask
            assert peer.endpoint is not None
            peer.endpoint.up = mask == 0
        ramp = SlowStart(config.slow_start, aggression=config.slow_start_aggression) if config.slow_start else None
        self.peer_set = PeerSet(self._balanced(), panic_threshold=config.panic_threshold, slow_start=ramp)
        self.picker: Picker = self._new_picker(previous.picker if previous is not None else None)
        # The picker's start/finish hooks only count requests in flight (every policy but peak_ewma): the shell
        # may then count on the endpoint itself.
        on_finish: object = type(self.picker).on_finish
        self.counts_only = on_finish is PickerBase.on_finish
        self.outlier: OutlierDetector[str] | None = None
        if config.outlier is not None:
            if previous is not None and previous.outlier is not None and previous.config.outlier == config.outlier:
                self.outlier = previous.outlier
                for key in {p.key for p in previous.peers} - {p.key for p in peers}:
                    self.outlier.remove(key)
                for peer in peers:
                    self.outlier.add(peer.key)
            else:
                self.outlier = OutlierDetector(config.outlier, [p.key for p in peers], now=now)
        self._due = self._next_due()

    def _balanced(self) -> list[Endpoint]:
        """The endpoints the picker draws from: all but those waiting for their first passed check (which count
        for neither the rotation nor the panic threshold until then)."""
        return [p.endpoint for p in self.peers if p.endpoint is not None and not self._down[p.key] & UNCHECKED]

    def _new_picker(self, prior: Picker | None) -> Picker:
        if self.config.policy == "round_robin":
            return SmoothPicker(self.peer_set, prior.current if isinstance(prior, SmoothPicker) else None)
        return make_picker(self.config.policy, self.peer_set)

    @classmethod
    def build(
        cls, specs: Sequence[PeerSpec], config: GroupConfig, *, now: float, previous: PeerGroup | None = None
    ) -> PeerGroup:
        """`previous` itself when nothing that matters changed (see the module doc), else a new group."""
        if (
            previous is not None
            and previous.config == config
            and previous._signature == tuple(_signature(s) for s in specs)
        ):
            for peer, spec in zip(previous.peers, specs, strict=True):
                if peer.generation != spec.generation:
                    peer.generation = spec.generation
                    if peer.failed_until:
                        peer.failed_until = 0.0
                        previous._mark(peer, FAILED, False, now)
            return previous
        return cls(specs, config, now=now, previous=previous)

    def __len__(self) -> int:
        return len(self.peers)

    # --- the hot path

    def pick(
        self, now: float, rng: Rng, key: bytes | None = None, exclude: Collection[Peer] | None = None
    ) -> Peer | None:
        """The peer for a request (hash `key` for the consistent-hash policies), never one of `exclude`."""
        if exclude:
            ep = self.picker.pick(now, rng, key, [p.endpoint for p in exclude if p.endpoint is not None])
        else:
            ep = self.picker.pick(now, rng, key)
        return None if ep is None else ep.target  # type: ignore[return-value]

    def started(self, peer: Peer, now: float) -> None:
        """A try on `peer` starts (in-flight counts)."""
        ep = peer.endpoint
        if ep is not None:
            self.picker.on_start(ep, now)

    def finished(self, peer: Peer, now: float, latency: float, status: int) -> list[Change[str]]:
        """A try on `peer` ended after `latency` s with `status` (502/503/504 for connect failure, reset, timeout;
        0: no verdict, e.g. the client went away); the ejection it caused, if any."""
        ep = peer.endpoint
        if ep is not None:
            if self.counts_only:
                if ep.active > 0:
                    ep.active -= 1
            else:
                self.picker.on_finish(ep, now, max(0.0, latency))
        if not status or self.outlier is None:
            return []
        changes = self.outlier.on_result(peer.key, status, now)
        if changes:
            self._apply(changes, now)
        return changes

    # --- marks

    def get(self, key: str) -> Peer | None:
        for peer in self.peers:
            if peer.key == key:
                return peer
        return None

    def mark_failed(self, peer: Peer, now: float) -> None:
        """The shell could not talk to `peer`: out of the rotation until `now + fail_timeout`."""
        peer.failed_until = now + self.config.fail_timeout
        self._mark(peer, FAILED, True, now)
        self._due = min(self._due, peer.failed_until)

    def health(self, peer: Peer, passed: bool, now: float, *, rise: int, fall: int) -> HealthChange | None:
        """One active health-check result for `peer`; the change it made, if any."""
        if self.get(peer.key) is not peer:
            return None
        last, run = self._runs.get(peer.key, (True, 0))
        run = run + 1 if last == passed else 1
        self._runs[peer.key] = (passed, run)
        mask = self._down.get(peer.key, 0)
        if mask & UNCHECKED:  # new, waiting for its first pass: failures keep it out, one pass lets it in
            if not passed:
                return None
            self._admit(peer, now)
            return HealthChange(peer.key, True, now, run, first=True)
        unhealthy = bool(mask & UNHEALTHY)
        if passed and unhealthy and run >= rise:
            self._mark(peer, UNHEALTHY, False, now)
            return HealthChange(peer.key, True, now, run)
        if not passed and not unhealthy and run >= fall:
            self._mark(peer, UNHEALTHY, True, now)
            return HealthChange(peer.key, False, now, run)
        return None

    def tick(self, now: float) -> list[Change[str]]:
        """Expire failure marks and run the outlier detector's clock; the ejections and returns it made."""
        if now < self._due:
            return []
        for peer in self.peers:
            if peer.failed_until and peer.failed_until <= now:
                peer.failed_until = 0.0
                self._mark(peer, FAILED, False, now)
        changes: list[Change[str]] = []
        if self.outlier is not None and now >= self.outlier.next_deadline():
            changes = self.outlier.tick(now)
            self._apply(changes, now)
        self._due = self._next_due()
        return changes

    def out_of_rotation(self) -> list[str]:
        """Keys of the peers the gateway took out: ejected by outlier detection, failing active checks, or new and
        not yet passed by one (`wait_for_pass`)."""
        return [k for k, mask in self._down.items() if mask & (EJECTED | UNHEALTHY | UNCHECKED)]

    def unchecked(self) -> bool:
        """Some peer waits for its first passed active check (the checker probes at once rather than at its
        next interval)."""
        return any(mask & UNCHECKED for mask in self._down.values())

    def down_reasons(self, key: str) -> int:
        """The FAILED / UNHEALTHY / EJECTED bits that hold for peer `key` (0: in the rotation)."""
        return self._down.get(key, 0)

    def _admit(self, peer: Peer, now: float) -> None:
        """`peer` passed its first check: the picker draws from it from now on (ramping up under slow start)."""
        mask = self._down[peer.key] = self._down[peer.key] & ~UNCHECKED
        ep = peer.endpoint
        assert ep is not None
        ep.up = mask == 0
        ep.since = ep.stamp = now
        self.peer_set = PeerSet(
            self._balanced(),
            panic_threshold=self.peer_set.panic_threshold,
            slow_start=self.peer_set.slow_start,
            previous=self.peer_set,
        )
        self.picker = self._new_picker(self.picker)

    def _apply(self, changes: list[Change[str]], now: float) -> None:
        for change in changes:
            peer = self.get(change.peer)
            if peer is not None:
                self._mark(peer, EJECTED, change.ejected, now)
        self._due = self._next_due()

    def _mark(self, peer: Peer, bit: int, on: bool, now: float) -> None:
        mask = self._down.get(peer.key, 0)
        mask = mask | bit if on else mask & ~bit
        self._down[peer.key] = mask
        if peer.endpoint is not None:
            self.peer_set.set_up(peer.endpoint, mask == 0, now)

    def _next_due(self) -> float:
        due = min((p.failed_until for p in self.peers if p.failed_until), default=math.inf)
        if self.outlier is not None:
            due = min(due, self.outlier.next_deadline())
        return due
