"""Least request with the power of two choices: draw two peers at random, send to the less loaded one.

Theory of operation
-------------------
Envoy's `LEAST_REQUEST` (and the analysis of Mitzenmacher, "The Power of Two Choices in Randomized Load
Balancing"): choosing the better of two random peers, rather than the best of all, brings the maximum load down
from O(log n / log log n) to O(log log n) while costing two lookups, and — unlike a full least-connections scan —
several independent balancers do not all stampede to the same momentarily idle peer.

A pick draws two *distinct* candidates uniformly and returns the one with the lower load
`(active + 1) / weight` (slow-start weights while a ramp is on); on a tie the first drawn wins, which is itself
random. With one candidate it is returned; with none, None. The shell calls `on_start`/`on_finish` around
every request so `active` is right.
"""

from __future__ import annotations

from collections.abc import Collection

from jishi.core.lb.peers import Endpoint, PickerBase, Rng

__all__ = ["P2CPicker", "two_distinct"]


def two_distinct(n: int, rng: Rng) -> tuple[int, int]:
    """Two different indexes in range(n), n >= 2, each pair equally likely (in draw order)."""
    a = int(rng.random() * n)
    b = int(rng.random() * (n - 1))
    return a, (b + 1 if b >= a else b)


class P2CPicker(PickerBase):
    """The less loaded of two random candidates."""

    __slots__ = ()

    def pick(
        self, now: float, rng: Rng, key: bytes | None = None, exclude: Collection[Endpoint] | None = None
    ) -> Endpoint | None:
        """The better of two random candidates; None if the set has none for this request. `key` is ignored."""
        peers = self.peers
        cands = peers.select(exclude).candidates if exclude else peers.candidates
        n = len(cands)
        if n < 2:
            return cands[0] if n else None
        # two_distinct, inlined: this is the hot path of every least-request pick
        random = rng.random
        if n == 2:  # the same draws without the int() calls: i = int(2x) is x >= 0.5, and j is the other one
            i = 1 if random() >= 0.5 else 0
            random()  # (two_distinct's second draw, always 0 for two: drawn all the same, so the sequence holds)
            j = 1 - i
        else:
            i = int(random() * n)
            j = int(random() * (n - 1))
            if j >= i:
                j += 1
        a, b = cands[i], cands[j]
        if not exclude and now >= peers.even_after:
            return b if b.active < a.active else a
        weights = peers.weights(cands, now)
        if weights is None:
            return b if b.active < a.active else a
        return b if (b.active + 1) / weights[j] < (a.active + 1) / weights[i] else a
