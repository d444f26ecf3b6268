"""Whether to ask Redis at all: a small circuit breaker on the connection, pure (time is an argument).

Theory of operation
-------------------
    UP ──failure──▶ DOWN ──cool-down over, next call──▶ PROBING ──success──▶ UP
                     ▲                                      │
                     └───────────────failure────────────────┘

While UP every decision goes to Redis. One failure (an error or a call slower than the timeout) makes it DOWN:
for `cooldown` seconds no call tries Redis, so a dead or hung Redis costs no latency, only local decisions.
The first call after the cool-down is the probe (PROBING); calls made while it is in flight stay local. The probe
succeeding makes the link UP again; failing starts another cool-down. Calls that were already in flight when the
link went DOWN may report their own failure or success afterwards; a failure keeps it DOWN (the cool-down restarts),
a success of a call started before the failure is ignored — only a probe can bring the link back. A probe that
is cancelled before it answers leaves the link DOWN with the cool-down over, so the next call probes.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Link", "LinkState"]


class LinkState(Enum):
    UP = "up"
    DOWN = "down"
    PROBING = "probing"


class Link:
    """Decides per call whether to ask Redis, from the outcomes of earlier calls."""

    __slots__ = ("_until", "cooldown", "state")

    def __init__(self, cooldown: float) -> None:
        if not cooldown >= 0:
            raise ValueError(f"redis limiter cooldown must be >= 0 seconds, not {cooldown!r}")
        self.cooldown = cooldown
        self.state = LinkState.UP
        self._until = 0.0

    def ask(self, now: float) -> bool:
        """Whether the call at `now` should go to Redis (it becomes the probe when the cool-down is over)."""
        state = self.state
        if state is LinkState.UP:
            return True
        if state is LinkState.DOWN and now >= self._until:
            self.state = LinkState.PROBING
            return True
        return False

    def succeeded(self, probe: bool) -> bool:
        """A call to Redis answered; `probe` says whether it was asked while the link was not UP.

        Returns True when this brings the link back UP."""
        if probe and self.state is LinkState.PROBING:
            self.state = LinkState.UP
            return True
        return False

    def abandoned(self) -> None:
        """The probe ended with neither answer (its task was cancelled): the next call probes again."""
        if self.state is LinkState.PROBING:
            self.state = LinkState.DOWN
            self._until = 0.0

    def failed(self, now: float) -> bool:
        """A call to Redis failed at `now`. Returns True when this takes the link DOWN from UP."""
        was_up = self.state is LinkState.UP
        self.state = LinkState.DOWN
        self._until = now + self.cooldown
        return was_up
