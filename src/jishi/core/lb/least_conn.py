"""Weighted least connections: the peer with the fewest requests in flight per unit of weight.

Theory of operation
-------------------
nginx's `least_conn`: for each candidate compute `active / weight` and choose the smallest. A peer that is
slow accumulates in-flight requests and so receives fewer new ones, which round-robin cannot do. Comparisons are
made as `active_a * weight_b < active_b * weight_a` would be, but in floats (`active / weight`); weights are the
slow-start adjusted ones while a ramp is on.

Ties are common (an idle upstream has every peer at 0). nginx breaks them with weighted round-robin; here they
are broken by a weighted random draw over the tied peers, which needs no state and gives each tied peer its
weight share of the picks. The shell must call `on_start`/`on_finish` around every request, or the counts lie.
"""

from __future__ import annotations

from collections.abc import Collection
from itertools import accumulate

from jishi.core.lb.peers import Endpoint, PickerBase, Rng
from jishi.core.lb.uniform import weighted_choice

__all__ = ["LeastConnPicker"]


class LeastConnPicker(PickerBase):
    """Fewest in-flight requests per weight; ties broken at random by weight."""

    __slots__ = ()

    def pick(
        self, now: float, rng: Rng, key: bytes | None = None, exclude: Collection[Endpoint] | None = None
    ) -> Endpoint | None:
        """The least loaded candidate; None if the set has none for this request. `key` is ignored."""
        cands = self.peers.select(exclude).candidates
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0]
        weights = self.peers.weights(cands, now)
        if weights is None:
            least = 1 << 62
            tied: list[Endpoint] = []
            for ep in cands:
                active = ep.active
                if active < least:
                    least, tied = active, [ep]
                elif active == least:
                    tied.append(ep)
            return tied[0] if len(tied) == 1 else tied[int(rng.random() * len(tied))]
        low = float("inf")
        tied = []
        tied_w: list[float] = []
        for ep, w in zip(cands, weights, strict=True):
            load = ep.active / w
            if load < low:
                low, tied, tied_w = load, [ep], [w]
            elif load == low:
                tied.append(ep)
                tied_w.append(w)
        if len(tied) == 1:
            return tied[0]
        return weighted_choice(tied, list(accumulate(tied_w)), rng)
