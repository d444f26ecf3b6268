"""Slow start: a peer that has just joined (or just come back) gets a share of its weight that grows over a window.

Theory of operation
-------------------
A fresh instance has cold caches, an unwarmed JIT or connection pool, and would fall over if it took its full
share at once. Envoy's slow start ramps its weight instead:

    age     = now - since                    (since: when the peer joined the rotation or returned to it)
    factor  = 1                                                        if age >= window
            = max(min_weight_percent / 100, (age / window) ** (1 / aggression))   otherwise
    weight' = weight * factor

`aggression` 1.0 is a straight line; above 1 the ramp rises fast and flattens (more traffic early), below 1 it
stays low and rises late. `min_weight_percent` (Envoy's default 10 %) keeps a new peer from getting nothing at
all, so it is still probed. A window of 0 turns slow start off. The shell (or `PeerSet`) gives `since` and
`now`; nothing here reads a clock, so a ramp is exact at given times.
"""

from __future__ import annotations

__all__ = ["SlowStart"]


class SlowStart:
    """The weight factor of a peer `now - since` seconds into a ramp of `window` seconds (Envoy semantics)."""

    __slots__ = ("_exponent", "_floor", "aggression", "min_weight_percent", "window")

    def __init__(self, window: float, *, aggression: float = 1.0, min_weight_percent: float = 10.0) -> None:
        if window < 0:
            raise ValueError(f"slow start window must be >= 0 seconds, not {window!r}")
        if aggression <= 0:
            raise ValueError(f"slow start aggression must be > 0, not {aggression!r}")
        if not 0 <= min_weight_percent <= 100:
            raise ValueError(f"slow start min_weight_percent must be in [0, 100], not {min_weight_percent!r}")
        self.window = window
        self.aggression = aggression
        self.min_weight_percent = min_weight_percent
        self._exponent = 1.0 / aggression
        self._floor = min_weight_percent / 100.0

    def factor(self, since: float, now: float) -> float:
        """The share of its weight a peer in the rotation since `since` gets at `now`, in (0, 1]."""
        age = now - since
        if age >= self.window:
            return 1.0
        if age <= 0:
            return self._floor
        ramp: float = (age / self.window) ** self._exponent
        return max(self._floor, ramp)

    def ramping(self, since: float, now: float) -> bool:
        """Is a peer in the rotation since `since` still ramping up at `now`?"""
        return now - since < self.window

    def weight(self, weight: float, since: float, now: float) -> float:
        """`weight` scaled by the ramp factor."""
        return weight * self.factor(since, now)
