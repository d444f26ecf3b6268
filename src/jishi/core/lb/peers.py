"""The peers a picker chooses among: their weights, tiers, health, in-flight counts and latency estimates.

Theory of operation
-------------------
Every load-balancing policy in `jishi.core.lb` picks an `Endpoint` out of one `PeerSet`. An endpoint carries the
state all policies share, as plain slots so the hot path reads attributes and nothing else:

    key, weight, backup, target   identity (`target` is the shell's own object: an address, a pool ...)
    up                            in the rotation? (health checks, outlier detection set it via `set_up`)
    since                         when it joined or came back (slow start ramps from here)
    active                        requests in flight (on_start / on_finish)
    ewma, stamp                   peak-EWMA latency estimate and when it was last updated

The set answers one question per pick: which peers may be chosen (`select`: the panic threshold and backup tier
rules of `panic.py`, minus the peers this request excludes). With nothing excluded the answer is cached and
recomputed only when health changes, so a pick costs a lookup, not a scan (`candidates`, with `even_after`
the time from which their weights are all equal: the two attributes a picker's fast path reads). `weights(now)`
gives the effective weights of the candidates (slow start applied), or None when they are all equal, which lets
a picker take the fast unweighted path; `cumulative(now)` gives their running sums. While a ramp is on, the
weights of the cached candidates are kept for the last `now` seen, so picks that share a timestamp share the
work. `version` grows with every change, so pickers can cache what they derive (rings, tables, allowed sets). A
new `PeerSet` built with `previous=` keeps the state of endpoints with the same key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from itertools import accumulate
from typing import Protocol

from jishi.core.lb.panic import Selection, select
from jishi.core.lb.slow_start import SlowStart

__all__ = ["DEFAULT_PANIC_THRESHOLD", "Endpoint", "PeerSet", "PickerBase", "Rng"]

DEFAULT_PANIC_THRESHOLD = 0.5


class Rng(Protocol):
    """What a picker draws from: `random.Random` satisfies it (seeded in tests)."""

    def random(self) -> float: ...


class Endpoint:
    """One peer and its balancing state; see the module doc."""

    __slots__ = ("active", "backup", "ewma", "key", "since", "stamp", "target", "up", "weight")

    def __init__(
        self, key: str, weight: float = 1, *, backup: bool = False, target: object = None, since: float = 0.0
    ) -> None:
        if not weight > 0:
            raise ValueError(f"peer {key!r}: weight must be > 0, not {weight!r}")
        self.key = key
        self.weight = weight
        self.backup = backup
        self.target = target
        self.up = True
        self.since = since
        self.active = 0
        self.ewma = -1.0  # no latency seen yet; the EWMA picker starts it at its default
        self.stamp = since

    def __repr__(self) -> str:
        flags = ("" if self.up else " down") + (" backup" if self.backup else "")
        return f"Endpoint({self.key} w={self.weight}{flags} active={self.active})"


class PeerSet:
    """The endpoints of one upstream, in a primary and a backup tier, with the selection cached; see the module doc."""

    __slots__ = (
        "_by_key",
        "_cumulative",
        "_ramp_at",
        "_ramp_end",
        "_selection",
        "_weights",
        "backup",
        "candidates",
        "endpoints",
        "even_after",
        "panic_threshold",
        "primary",
        "slow_start",
        "version",
    )

    _ramp_at: tuple[float, list[float] | None, list[float] | None]  # (now, weights, running sums) while ramping
    _ramp_end: float
    candidates: tuple[Endpoint, ...]  # the candidates of a pick that excludes nothing (`select().candidates`)
    even_after: float  # from this time on `weights(candidates, now)` is None (all equal, no ramp); inf: never
    _weights: list[float] | None
    _cumulative: list[float] | None

    def __init__(
        self,
        endpoints: Iterable[Endpoint] = (),
        *,
        panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
        slow_start: SlowStart | None = None,
        previous: PeerSet | None = None,
    ) -> None:
        if not 0 <= panic_threshold <= 1:
            raise ValueError(f"panic_threshold must be a share in [0, 1], not {panic_threshold!r}")
        self.panic_threshold = panic_threshold
        self.slow_start = slow_start
        self.endpoints = tuple(endpoints)
        self._by_key: dict[str, Endpoint] = {}
        for ep in self.endpoints:
            if ep.key in self._by_key:
                raise ValueError(f"peer key {ep.key!r} appears twice")
            self._by_key[ep.key] = ep
            old = previous.get(ep.key) if previous is not None else None
            if old is not None:
                ep.up, ep.since, ep.active, ep.ewma, ep.stamp = old.up, old.since, old.active, old.ewma, old.stamp
        self.primary = tuple(ep for ep in self.endpoints if not ep.backup)
        self.backup = tuple(ep for ep in self.endpoints if ep.backup)
        self.version: int = previous.version + 1 if previous is not None else 0
        self._refresh()

    def __len__(self) -> int:
        return len(self.endpoints)

    def get(self, key: str) -> Endpoint | None:
        """The endpoint with `key`, if the set has it."""
        return self._by_key.get(key)

    def set_up(self, ep: Endpoint, up: bool, now: float) -> bool:
        """Put `ep` into the rotation or take it out; True if that changed anything. Coming back starts a ramp."""
        if ep.up == up:
            return False
        ep.up = up
        if up:
            ep.since = now
        self.version += 1
        self._refresh()
        return True

    def select(self, exclude: Collection[Endpoint] | None = None) -> Selection[Endpoint]:
        """The candidates of a pick (panic threshold and backup tier applied) and whether this is panic."""
        if not exclude:
            return self._selection
        return select(self.primary, self.backup, self.panic_threshold, exclude)

    @property
    def panic(self) -> bool:
        """Is the set in panic (health ignored) for requests that exclude nothing?"""
        return self._selection.panic

    def weights(self, candidates: tuple[Endpoint, ...], now: float) -> list[float] | None:
        """Effective weights of `candidates` at `now` (slow start applied), or None when they are all equal."""
        if now >= self._ramp_end:
            if candidates is self._selection.candidates:
                return self._weights
            first = candidates[0].weight if candidates else 1
            if all(ep.weight == first for ep in candidates):
                return None
            return [ep.weight for ep in candidates]
        cached = candidates is self._selection.candidates
        if cached and self._ramp_at[0] == now:
            return self._ramp_at[1]
        ramp = self.slow_start
        assert ramp is not None  # _ramp_end is finite only with slow start on
        window = ramp.window
        weights = [
            ep.weight if now - ep.since >= window else ramp.weight(ep.weight, ep.since, now) for ep in candidates
        ]
        if cached:
            self._ramp_at = (now, weights, list(accumulate(weights)))
        return weights

    def cumulative(self, candidates: tuple[Endpoint, ...], now: float) -> list[float] | None:
        """Running sums of `weights(candidates, now)`, or None when the weights are all equal."""
        if candidates is self._selection.candidates:
            if now >= self._ramp_end:
                return self._cumulative
            if self._ramp_at[0] != now:
                self.weights(candidates, now)
            return self._ramp_at[2]
        weights = self.weights(candidates, now)
        return None if weights is None else list(accumulate(weights))

    def _refresh(self) -> None:
        self._selection = select(self.primary, self.backup, self.panic_threshold)
        cands = self._selection.candidates
        if cands and any(ep.weight != cands[0].weight for ep in cands):
            self._weights = [ep.weight for ep in cands]
            self._cumulative = list(accumulate(self._weights))
        else:
            self._weights = self._cumulative = None
        self._ramp_at = (float("nan"), None, None)
        ramp = self.slow_start
        if ramp is None or ramp.window <= 0 or not self.endpoints:
            self._ramp_end = float("-inf")
        else:
            self._ramp_end = max(ep.since for ep in self.endpoints) + ramp.window
        self.candidates = cands
        self.even_after = self._ramp_end if self._weights is None else float("inf")


class PickerBase:
    """What every picker shares: its peer set and the in-flight count kept by `on_start`/`on_finish`."""

    __slots__ = ("peers",)

    def __init__(self, peers: PeerSet) -> None:
        self.peers = peers

    def on_start(self, peer: Endpoint, now: float) -> None:
        """A request to `peer` starts at `now`."""
        peer.active += 1

    def on_finish(self, peer: Endpoint, now: float, latency: float) -> None:
        """A request to `peer` that took `latency` seconds ended at `now`."""
        if peer.active > 0:
            peer.active -= 1
