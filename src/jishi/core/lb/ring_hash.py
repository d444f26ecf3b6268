"""Ring hash: consistent hashing of request keys onto peers, ketama-style, with virtual nodes by weight.

Theory of operation
-------------------
Each peer is placed on a 64-bit ring at many points ("virtual nodes"): the hashes of `"{key}#{i}"` for
i < `round(vnodes * weight)` (at least one). A peer's points depend on its own key and weight only, never on
the other peers, which is what keeps movement minimal when one joins or leaves. The points are
sorted once, when the picker is built (or the peer set's membership or weights change). A request key is
hashed (`keyhash.hash64`) and served by the owner of the first point at or after its hash, wrapping around.

* The same key always lands on the same peer while the peer set is the same.
* Adding or removing one of N equally weighted peers moves only about 1/N of the keys: the keys that move are
  exactly those whose next point belongs to (or now belongs to) that peer.
* A peer that is down or excluded is skipped by walking on along the ring to the next point whose owner is a
  candidate. That is exactly where the key would go if the ring were rebuilt without the peer, so health
  flapping moves only the keys of the flapping peer and nothing is rebuilt.

The backup tier has its own ring, used when the candidates are backup peers (see `panic.py`). A pick without
a key (no header, no cookie) falls back to a weighted random candidate. With the default 256 points per unit
of weight a peer's share deviates from its weight share by about 1/sqrt(256 * weight), ~6 % relative (ketama
uses 160; Envoy's minimum ring is 1024 points in all). Keep weights small integers: weight 100 means 25,600
points for that peer.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Sequence

from jishi.core.lb.keyhash import KeyCache, hash64, hash64_str
from jishi.core.lb.peers import Endpoint, PeerSet, PickerBase, Rng
from jishi.core.lb.uniform import weighted_choice

__all__ = ["DEFAULT_VNODES", "Ring", "RingHashPicker"]

DEFAULT_VNODES = 256  # points on the ring per unit of weight


class Ring:
    """Sorted points of one tier of peers; `owner(h)` walks to the first point at or after hash `h`."""

    __slots__ = ("_starts", "hashes", "owners")

    def __init__(self, peers: Sequence[Endpoint], vnodes: int) -> None:
        points: list[tuple[int, int]] = []
        for idx, ep in enumerate(peers):
            count = max(1, round(vnodes * ep.weight))
            points.extend((hash64_str(f"{ep.key}#{i}"), idx) for i in range(count))
        points.sort()
        self.hashes = [h for h, _ in points]
        owners = [peers[i] for _, i in points]
        self.owners: list[Endpoint] = owners
        self._starts = KeyCache()

    def __len__(self) -> int:
        return len(self.hashes)

    def start(self, key: bytes) -> int:
        """The index of the first point at or after the hash of `key` (may be len(self): wrap to 0)."""
        start = self._starts.get(key)
        if start is None:
            start = self._starts.put(key, bisect_left(self.hashes, hash64(key)))
        return start

    def lookup(self, key: bytes, allowed: Collection[Endpoint]) -> Endpoint | None:
        """The owner of the first point at or after the hash of `key` (wrapping) that is in `allowed`, if any."""
        n = len(self.hashes)
        if n == 0:
            return None
        start = self.start(key)
        owners = self.owners
        if start < n and owners[start] in allowed:
            return owners[start]
        for step in range(n):
            ep = owners[(start + step) % n]
            if ep in allowed:
                return ep
        return None


class RingHashPicker(PickerBase):
    """Consistent hashing of the request key over a ketama ring; see the module doc."""

    __slots__ = ("_allowed", "_backup_ring", "_primary_ring", "vnodes")

    def __init__(self, peers: PeerSet, *, vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError(f"ring hash vnodes must be >= 1, not {vnodes}")
        super().__init__(peers)
        self.vnodes = vnodes
        self._primary_ring = Ring(peers.primary, vnodes)
        self._backup_ring = Ring(peers.backup, vnodes)
        self._allowed: tuple[int, frozenset[Endpoint]] = (-1, frozenset())

    def pick(
        self, now: float, rng: Rng, key: bytes | None = None, exclude: Collection[Endpoint] | None = None
    ) -> Endpoint | None:
        """The peer owning `key` on the ring (skipping non-candidates); random by weight when `key` is None."""
        sel = self.peers.select(exclude)
        cands = sel.candidates
        if not cands:
            return None
        if key is None:
            return weighted_choice(cands, self.peers.cumulative(cands, now), rng)
        ring = self._backup_ring if cands[0].backup else self._primary_ring
        return ring.lookup(key, self._allowed_set(cands, exclude))

    def _allowed_set(self, cands: tuple[Endpoint, ...], exclude: Collection[Endpoint] | None) -> frozenset[Endpoint]:
        if exclude:
            return frozenset(cands)
        version, allowed = self._allowed
        if version != self.peers.version:
            allowed = frozenset(cands)
            self._allowed = (self.peers.version, allowed)
        return allowed
