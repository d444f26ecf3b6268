"""Load-balancing policies and passive outlier detection, pure: the gateway and the client SDK choose peers here.

Every picker chooses an `Endpoint` out of a `PeerSet` and follows one protocol, `Picker`:

    pick(now, rng, key=None, exclude=None) -> Endpoint | None
    on_start(peer, now)              a request to peer begins (in-flight counts)
    on_finish(peer, now, latency)    it ended after `latency` seconds (latency estimates)

`now` is seconds on the shell's monotonic clock, `rng` a `random.Random` (seeded in tests), `key` the bytes of
the hash key (header, cookie, client IP or path) for the consistent-hash pickers, `exclude` the peers this
request already tried. Weights, the `backup` tier (used only when no primary peer is available), the panic
threshold and slow start are properties of the `PeerSet` and hold for every picker.

    peers        Endpoint, PeerSet, PickerBase, Rng
    panic        select, Selection — which peers may be chosen (health, backup tier, panic, exclusion)
    slow_start   SlowStart — weight ramp for new peers (Envoy's aggression)
    uniform      RandomPicker — weighted random
    least_conn   LeastConnPicker — weighted least connections (nginx)
    p2c          P2CPicker — least request, power of two choices (Envoy)
    ewma         EwmaPicker — peak-EWMA P2C (Finagle, Linkerd)
    ring_hash    RingHashPicker — ketama ring with virtual nodes
    maglev       MaglevPicker — Maglev lookup table
    keyhash      hash64 — the stable 64-bit hash both consistent-hash pickers use
    outlier      OutlierDetector, OutlierConfig, Outcome, Change — Envoy's passive outlier ejection

`make_picker(policy, peers, **options)` builds a picker by its configuration name (`POLICIES`).
Smooth weighted round-robin lives in `jishi.core.balancer`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol

from jishi.core.lb.ewma import EwmaPicker
from jishi.core.lb.keyhash import hash64
from jishi.core.lb.least_conn import LeastConnPicker
from jishi.core.lb.maglev import MaglevPicker
from jishi.core.lb.outlier import Change, Outcome, OutlierConfig, OutlierDetector, Reason, classify
from jishi.core.lb.p2c import P2CPicker
from jishi.core.lb.panic import Selection, select
from jishi.core.lb.peers import DEFAULT_PANIC_THRESHOLD, Endpoint, PeerSet, PickerBase, Rng
from jishi.core.lb.ring_hash import RingHashPicker
from jishi.core.lb.slow_start import SlowStart
from jishi.core.lb.uniform import RandomPicker

__all__ = [
    "DEFAULT_PANIC_THRESHOLD",
    "POLICIES",
    "Change",
    "Endpoint",
    "EwmaPicker",
    "LeastConnPicker",
    "MaglevPicker",
    "Outcome",
    "OutlierConfig",
    "OutlierDetector",
    "P2CPicker",
    "PeerSet",
    "Picker",
    "PickerBase",
    "RandomPicker",
    "Reason",
    "RingHashPicker",
    "Rng",
    "Selection",
    "SlowStart",
    "classify",
    "hash64",
    "make_picker",
    "select",
]


class Picker(Protocol):
    """What the gateway asks of a load-balancing policy; see the package doc."""

    peers: PeerSet

    def pick(
        self, now: float, rng: Rng, key: bytes | None = None, exclude: Collection[Endpoint] | None = None
    ) -> Endpoint | None: ...

    def on_start(self, peer: Endpoint, now: float) -> None: ...

    def on_finish(self, peer: Endpoint, now: float, latency: float) -> None: ...


POLICIES: dict[str, Callable[..., Picker]] = {
    "random": RandomPicker,
    "least_conn": LeastConnPicker,
    "least_request": P2CPicker,
    "peak_ewma": EwmaPicker,
    "ring_hash": RingHashPicker,
    "maglev": MaglevPicker,
}


def make_picker(policy: str, peers: PeerSet, **options: Any) -> Picker:
    """The picker named `policy` over `peers`, with its own `options` (e.g. `decay=` for peak_ewma)."""
    factory = POLICIES.get(policy)
    if factory is None:
        raise ValueError(f"unknown load-balancing policy {policy!r}; choose one of: {', '.join(sorted(POLICIES))}")
    return factory(peers, **options)
