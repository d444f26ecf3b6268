"""Panic threshold: which peers a pick may choose from, given health, the backup tier and per-request exclusion.

Theory of operation
-------------------
Health checks and outlier detection take peers out of the rotation. That protects clients from a broken peer,
but when *most* peers look broken the judgement itself is suspect (a bad deploy of the health endpoint, a
network blip seen by the checker), and squeezing all traffic onto the few survivors would knock them over too.
Envoy's answer is the panic threshold: when the healthy share falls below it, spread over all peers and ignore
health. nginx's answer for standby capacity is the `backup` tier: used only when no primary peer is available.
Both combine here, in this order:

1. The primary tier, if its healthy share (up peers / all peers of the tier) is at least `threshold` and at
   least one up peer is not excluded: the up, not-excluded primary peers.
2. Otherwise the backup tier, under the same test: its up, not-excluded peers.
3. Otherwise panic, if `threshold` > 0: every not-excluded peer of the primary tier (of the backup tier if all
   primary peers are excluded), up or not. With `threshold` 0 panic is off and nothing is chosen.

The healthy share is measured on the whole tier, never on what is left after exclusion: exclusion is about one
request (a retry avoids the peers it already tried), health is about the peer. A threshold of 0.5 is Envoy's
default; 0 disables panic; 1.0 panics as soon as one peer is down (rarely what anyone wants).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Generic, Protocol, TypeVar

__all__ = ["HasHealth", "Selection", "select"]

P = TypeVar("P", bound="HasHealth")


class HasHealth(Protocol):
    """A peer as far as selection cares: is it up?"""

    @property
    def up(self) -> bool: ...


class Selection(Generic[P]):
    """The candidates of a pick, and whether they were chosen in panic (health ignored)."""

    __slots__ = ("candidates", "panic")

    def __init__(self, candidates: tuple[P, ...], panic: bool) -> None:
        self.candidates = candidates
        self.panic = panic

    def __repr__(self) -> str:
        return f"Selection({len(self.candidates)} candidates{' PANIC' if self.panic else ''})"


def select(
    primary: Sequence[P], backup: Sequence[P], threshold: float, exclude: Collection[P] | None = None
) -> Selection[P]:
    """The peers a pick may choose from (see the module doc); empty candidates when nothing may be chosen."""
    for tier in (primary, backup):
        if not tier:
            continue
        up = tuple(p for p in tier if p.up and not (exclude and p in exclude))
        if up and _healthy_share(tier) >= threshold:
            return Selection(up, False)
    if threshold <= 0:
        return Selection((), False)
    for tier in (primary, backup):
        left = tuple(p for p in tier if not (exclude and p in exclude))
        if left:
            return Selection(left, True)
    return Selection((), False)


def _healthy_share(tier: Sequence[P]) -> float:
    return sum(1 for p in tier if p.up) / len(tier)
