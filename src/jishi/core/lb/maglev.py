"""Maglev: consistent hashing through a lookup table, with even shares and minimal disruption (Google, NSDI '16).

Theory of operation
-------------------
A table of M slots (M prime, larger than 100 x the number of peers) maps `hash(key) % M` to a peer; a lookup
is one index. The table is filled from per-peer permutations of the slots:

    offset = h1(key) % M,   skip = h2(key) % (M - 1) + 1,   permutation[j] = (offset + j * skip) % M

(M prime makes every skip coprime with M, so each permutation visits every slot.) Peers take turns; in its
turn a peer claims the next slot of its permutation that is still free. With equal weights every peer ends
with M/N slots, give or take one. Weights follow Envoy's weighted Maglev: in round r a peer takes a turn only
if `r * weight >= target`, and each turn adds `max_weight` to its target, so a peer of half the top weight
takes a turn every second round and ends with half the slots.

Because each peer's preferences are fixed by its own key, removing a peer mostly frees only its own slots,
which other peers then fill; the other slots keep their owners (the paper measures a few percent extra churn).
A slot whose owner is down or excluded walks on through the table to the next candidate, which spreads that
peer's keys over the others in proportion to their shares without rebuilding. Building costs O(M log M)
in the worst case — tens of milliseconds in Python for M = 65537 — and happens only when membership or
weights change (build a new picker for a new `PeerSet`). A pick without a key is a weighted random candidate.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from jishi.core.lb.keyhash import KeyCache, hash64, hash64_str
from jishi.core.lb.peers import Endpoint, PeerSet, PickerBase, Rng
from jishi.core.lb.uniform import weighted_choice

__all__ = ["DEFAULT_TABLE_SIZE", "MaglevPicker", "build_table", "is_prime"]

DEFAULT_TABLE_SIZE = 65537  # Envoy's default; prime


def is_prime(n: int) -> bool:
    """Is `n` a prime number?"""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def build_table(peers: Sequence[Endpoint], size: int) -> list[int]:
    """The Maglev table: for each of `size` slots the index in `peers` of its owner (empty when no peers)."""
    if not is_prime(size):
        raise ValueError(f"Maglev table size must be a prime number, not {size}")
    n = len(peers)
    if n == 0:
        return []
    offsets = [hash64_str(ep.key, b"maglev-offset") % size for ep in peers]
    skips = [hash64_str(ep.key, b"maglev-skip") % (size - 1) + 1 for ep in peers]
    max_w = max(ep.weight for ep in peers)
    weights = [ep.weight for ep in peers]
    targets = [0.0] * n
    nexts = [0] * n
    table = [-1] * size
    filled = 0
    rnd = 0
    while filled < size:
        rnd += 1
        for i in range(n):
            if rnd * weights[i] < targets[i]:
                continue
            targets[i] += max_w
            off, skip, j = offsets[i], skips[i], nexts[i]
            c = (off + j * skip) % size
            while table[c] >= 0:
                j += 1
                c = (off + j * skip) % size
            table[c] = i
            nexts[i] = j + 1
            filled += 1
            if filled == size:
                break
    return table


class MaglevPicker(PickerBase):
    """Consistent hashing of the request key through a Maglev table; see the module doc."""

    __slots__ = ("_allowed", "_slots", "_tables", "table_size")

    def __init__(self, peers: PeerSet, *, table_size: int = DEFAULT_TABLE_SIZE) -> None:
        super().__init__(peers)
        self.table_size = table_size
        self._tables: dict[bool, list[Endpoint]] = {}
        for backup, tier in ((False, peers.primary), (True, peers.backup)):
            self._tables[backup] = [tier[i] for i in build_table(tier, table_size)] if tier else []
        self._allowed: tuple[int, frozenset[Endpoint]] = (-1, frozenset())
        self._slots = KeyCache()

    def slot(self, key: bytes) -> int:
        """The table slot of `key`."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots.put(key, hash64(key) % self.table_size)
        return slot

    def owner(self, key: bytes, backup: bool = False) -> Endpoint | None:
        """The table owner of `key` in a tier, whatever its health."""
        table = self._tables[backup]
        return table[self.slot(key)] if table else None

    def pick(
        self, now: float, rng: Rng, key: bytes | None = None, exclude: Collection[Endpoint] | None = None
    ) -> Endpoint | None:
        """The table owner of `key` (walking on past non-candidates); random by weight when `key` is None."""
        cands = self.peers.select(exclude).candidates
        if not cands:
            return None
        if key is None:
            return weighted_choice(cands, self.peers.cumulative(cands, now), rng)
        table = self._tables[cands[0].backup]
        size = len(table)
        slot = self.slot(key)
        ep = table[slot]
        allowed = self._allowed_set(cands, exclude)
        if ep in allowed:
            return ep
        for step in range(1, size):
            ep = table[(slot + step) % size]
            if ep in allowed:
                return ep
        return None

    def _allowed_set(self, cands: tuple[Endpoint, ...], exclude: Collection[Endpoint] | None) -> frozenset[Endpoint]:
        if exclude:
            return frozenset(cands)
        version, allowed = self._allowed
        if version != self.peers.version:
            allowed = frozenset(cands)
            self._allowed = (self.peers.version, allowed)
        return allowed
