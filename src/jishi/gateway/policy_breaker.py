"""What the gateway says about a route's circuit breaker: its refusals and its state changes.

    refusal(breaker, now) -> (state, retry_after)   why a call was not permitted, and when to come back:
                                                     OPEN the rest of its wait; HALF_OPEN 1 s (every probe is out
                                                     and the answer comes with them); FORCED_OPEN None (until the
                                                     operator acts)
    changes(breaker, route, wall) -> [EventRecord]  the drained state changes as events (kind "route.breaker",
                                                     subject the route; level warning when it opens), each logged

The breaker runs on the loop's clock; `wall` (time.time() − loop.time()) turns its times into Unix times.
"""

from __future__ import annotations

import logging

from jishi.core.resilience import Breaker, BreakerState
from jishi.registry.model import EventRecord

__all__ = ["changes", "refusal"]

log = logging.getLogger(__name__)

_OPEN_LIKE = (BreakerState.OPEN, BreakerState.FORCED_OPEN)


def refusal(breaker: Breaker, now: float) -> tuple[BreakerState, float | None]:
    state = breaker.state
    deadline = breaker.next_deadline()
    if state is BreakerState.OPEN and deadline is not None:
        return state, deadline - now
    if state is BreakerState.HALF_OPEN:
        return state, 1.0
    return state, None


def changes(breaker: Breaker, route: str, wall: float) -> list[EventRecord]:
    events = []
    for change in breaker.drain_events():
        old, new = change.old.value, change.new.value
        opened = change.new in _OPEN_LIKE
        log.log(logging.WARNING if opened else logging.INFO,
                "route %s: circuit breaker %s → %s: %s", route, old, new, change.reason)  # fmt: skip
        events.append(
            EventRecord(
                time=wall + change.at,
                kind="route.breaker",
                subject=route,
                reason=f"circuit breaker {old} → {new}: {change.reason}",
                level="warning" if opened else "info",
                labels={"route": route, "from": old, "to": new},
            )
        )
    return events
