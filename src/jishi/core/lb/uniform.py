"""Random: each pick is an independent draw, weighted by the peers' (slow-start adjusted) weights.

Theory of operation
-------------------
The simplest policy with no shared state at all, which is its point: several gateway workers, or many
clients, each drawing at random never synchronise into herds the way independent round-robins can. With equal
weights a pick is one `rng.random()` and an index; with unequal weights it draws `u` in [0, total) and bisects the
running sums, so peer i is chosen with probability weight_i / total. The module is named `uniform` so it never
shadows the standard library's `random`; the `rng` (a `random.Random`) is an argument.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Sequence
from typing import TypeVar

from jishi.core.lb.peers import Endpoint, PickerBase, Rng

__all__ = ["RandomPicker", "weighted_choice"]

T = TypeVar("T")


def weighted_choice(items: Sequence[T], sums: Sequence[float] | None, rng: Rng) -> T:
    """One of `items` (not empty), chosen with probability proportional to its weight.

    `sums` are the running sums of the weights (`itertools.accumulate`); None means all weights are equal.
    """
    if sums is None:
        return items[int(rng.random() * len(items))]
    i = bisect_right(sums, rng.random() * sums[-1])
    return items[i if i < len(items) else len(items) - 1]


class RandomPicker(PickerBase):
    """Weighted random over the candidates of the peer set."""

    __slots__ = ()

    def pick(
        self, now: float, rng: Rng, key: bytes | None = None, exclude: Collection[Endpoint] | None = None
    ) -> Endpoint | None:
        """A random candidate, by weight; None if the set has none for this request. `key` is ignored."""
        cands = self.peers.select(exclude).candidates
        if not cands:
            return None
        return weighted_choice(cands, self.peers.cumulative(cands, now), rng)
