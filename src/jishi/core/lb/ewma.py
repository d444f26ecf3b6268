"""Peak-EWMA power of two choices: send to the peer expected to answer soonest (Finagle, Linkerd, tower).

Theory of operation
-------------------
Counting requests in flight (least request) misses a peer that is slow but not yet backed up. Peak-EWMA keeps a
latency estimate per peer and multiplies it by the work queued there:

    cost(peer, now) = rtt(peer, now) * (active + 1) / weight

The estimate is an exponentially weighted moving average with two twists:

* **peak**: a sample above the estimate replaces it at once (`rtt = latency`), so a peer that turns slow is
  avoided immediately; samples below it pull it down gradually, weighted by how long ago the last update was:
  `w = exp(-(now - stamp) / decay)`, `rtt = rtt * w + latency * (1 - w)`.
* **decay**: with no new samples the estimate fades toward 0 as `rtt * exp(-(now - stamp) / decay)`, so a peer
  that was slow once is tried again after a while instead of being starved forever. (tower folds this in by
  updating with a zero sample on every read; computing it on read without writing is the same number.)

A peer never measured costs `default_rtt * (active + 1) / weight`. A pick draws two distinct candidates (see
`p2c.py`) and returns the cheaper; on a tie the first drawn. `decay` is the time constant in seconds (Linkerd's
default is 10 s). The shell must call `on_start` and `on_finish(peer, now, latency)` around every request.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from jishi.core.lb.p2c import two_distinct
from jishi.core.lb.peers import Endpoint, PeerSet, PickerBase, Rng

__all__ = ["EwmaPicker"]


class EwmaPicker(PickerBase):
    """The cheaper (latency x queue) of two random candidates; see the module doc."""

    __slots__ = ("decay", "default_rtt")

    def __init__(self, peers: PeerSet, *, decay: float = 10.0, default_rtt: float = 0.030) -> None:
        if decay <= 0:
            raise ValueError(f"EWMA decay must be > 0 seconds, not {decay!r}")
        if default_rtt < 0:
            raise ValueError(f"EWMA default_rtt must be >= 0 seconds, not {default_rtt!r}")
        super().__init__(peers)
        self.decay = decay
        self.default_rtt = default_rtt

    def rtt(self, peer: Endpoint, now: float) -> float:
        """The latency estimate of `peer` at `now`, decayed since its last update."""
        if peer.ewma < 0:
            return self.default_rtt
        return peer.ewma * math.exp(-max(0.0, now - peer.stamp) / self.decay)

    def cost(self, peer: Endpoint, now: float, weight: float | None = None) -> float:
        """The expected wait for a new request at `peer`: rtt * (active + 1) / weight."""
        return self.rtt(peer, now) * (peer.active + 1) / (peer.weight if weight is None else weight)

    def pick(
        self, now: float, rng: Rng, key: bytes | None = None, exclude: Collection[Endpoint] | None = None
    ) -> Endpoint | None:
        """The cheaper of two random candidates; None if the set has none for this request. `key` is ignored."""
        cands = self.peers.select(exclude).candidates
        n = len(cands)
        if n < 2:
            return cands[0] if n else None
        i, j = two_distinct(n, rng)
        a, b = cands[i], cands[j]
        weights = self.peers.weights(cands, now)
        if weights is None:
            return b if self.cost(b, now, 1.0) < self.cost(a, now, 1.0) else a
        return b if self.cost(b, now, weights[j]) < self.cost(a, now, weights[i]) else a

    def on_finish(self, peer: Endpoint, now: float, latency: float) -> None:
        """A request to `peer` ended at `now` after `latency` seconds: fold the sample into the estimate."""
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, not {latency!r}")
        if peer.active > 0:
            peer.active -= 1
        if peer.ewma < 0 or latency > peer.ewma:
            peer.ewma = latency  # first sample, or a new peak: take it at once
        else:
            w = math.exp(-max(0.0, now - peer.stamp) / self.decay)
            peer.ewma = peer.ewma * w + latency * (1.0 - w)
        peer.stamp = now
