"""Reconciliation: from desired services and the slots an agent runs, decide what to start, stop or replace.

Theory of operation
-------------------
The desired state is, per service, an instance count and a `revision`: a fingerprint of everything that needs
a new process when it changes (command, env, working directory). The current state is the agent's slots, each
with its service, index (0…), the revision it runs and its lifecycle state. `plan()` is a pure function of the
two and returns actions in the order to carry them out:

1. a service that is no longer desired: STOP every slot, highest index first;
2. scale-down: STOP the slots with index ≥ count, highest first;
3. scale-up: START every missing index < count (a slot that is still STOPPING blocks its index until gone);
4. a changed spec: REPLACE slots running an old revision. Slots that serve no traffic (pending, backing off)
   are replaced at once; serving ones roll one at a time: only when every other slot of the service is READY
   on the current revision, and no start or stop of the service is under way, is the next (lowest index)
   one replaced. A new revision that never becomes ready
   therefore stalls the roll-out instead of taking the whole service down.

STOPPING and STOPPED slots are left alone: they are on their way out already. Running `plan()` again after
carrying out its actions returns nothing new until the slots' states change, so the shell may call it on
every event and on a timer.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jishi.core.lifecycle import SlotState

__all__ = ["Action", "ActionKind", "Desired", "Slot", "plan"]


@dataclass(frozen=True, slots=True)
class Desired:
    count: int
    revision: str


@dataclass(frozen=True, slots=True)
class Slot:
    service: str
    index: int
    revision: str
    state: SlotState


class ActionKind(enum.Enum):
    START = "start"
    STOP = "stop"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    service: str
    index: int


_LEAVING = frozenset({SlotState.STOPPING, SlotState.STOPPED})


def plan(desired: Mapping[str, Desired], slots: Iterable[Slot]) -> list[Action]:
    """The actions that move `slots` towards `desired` (see the module docstring for the rules)."""
    by_service: dict[str, list[Slot]] = {}
    for slot in slots:
        by_service.setdefault(slot.service, []).append(slot)
    actions: list[Action] = []
    for service in sorted(by_service.keys() - desired.keys()):
        actions += _stop(by_service[service], 0)
    for service in sorted(desired):
        want = desired[service]
        have = by_service.get(service, [])
        actions += _stop(have, want.count)
        taken = {s.index for s in have}
        actions += [Action(ActionKind.START, service, i) for i in range(want.count) if i not in taken]
        actions += _replacements(service, want, have)
    return actions


def _stop(slots: list[Slot], keep: int) -> list[Action]:
    """STOP every slot with index ≥ keep that is not already leaving, highest index first."""
    chosen = [s for s in slots if s.index >= keep and s.state not in _LEAVING]
    return [Action(ActionKind.STOP, s.service, s.index) for s in sorted(chosen, key=_index, reverse=True)]


def _replacements(service: str, want: Desired, have: list[Slot]) -> list[Action]:
    slots = [s for s in have if s.index < want.count]
    live = [s for s in slots if s.state not in _LEAVING]
    outdated = sorted((s for s in live if s.revision != want.revision), key=_index)
    idle = [s for s in outdated if s.state is not SlotState.READY]
    serving = [s for s in outdated if s.state is SlotState.READY]
    actions = [Action(ActionKind.REPLACE, service, s.index) for s in idle]
    busy = (
        bool(idle)
        or len(slots) < want.count  # some index is still to be started
        or len(live) < len(slots)  # a replacement is stopping its old process
        or len(slots) < len(have)  # a scale-down is still under way
        or any(s.revision == want.revision and s.state is not SlotState.READY for s in live)
    )
    if serving and not busy:
        actions.append(Action(ActionKind.REPLACE, service, serving[0].index))
    return actions


def _index(slot: Slot) -> int:
    return slot.index
