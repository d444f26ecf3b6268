"""Reconcile decisions: start missing slots, stop surplus highest first, roll changed specs one at a time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jishi.core.lifecycle import SlotState
from jishi.core.reconcile import Action, ActionKind, Desired, Slot, plan

START, STOP, REPLACE = ActionKind.START, ActionKind.STOP, ActionKind.REPLACE
R, P, B, S = SlotState.READY, SlotState.PENDING, SlotState.BACKOFF, SlotState.STOPPING


def _slots(service: str, revision: str, *states: SlotState) -> list[Slot]:
    return [Slot(service, i, revision, st) for i, st in enumerate(states)]


def test_starts_every_slot_of_a_new_service() -> None:
    """Nothing running and 3 wanted: start slots 0, 1, 2."""
    assert plan({"web": Desired(3, "a")}, []) == [Action(START, "web", i) for i in range(3)]


def test_nothing_to_do_when_converged() -> None:
    """Running exactly what is desired yields no actions."""
    assert plan({"web": Desired(2, "a")}, _slots("web", "a", R, P)) == []


def test_scale_down_stops_highest_slots_first() -> None:
    """5 → 2 stops slots 4, 3, 2 in that order."""
    actions = plan({"web": Desired(2, "a")}, _slots("web", "a", R, R, R, R, R))
    assert actions == [Action(STOP, "web", 4), Action(STOP, "web", 3), Action(STOP, "web", 2)]


def test_deleted_service_stops_everything() -> None:
    """A service no longer desired has all its slots stopped, highest first; others are untouched."""
    slots = _slots("old", "a", R, B) + _slots("web", "a", R)
    assert plan({"web": Desired(1, "a")}, slots) == [Action(STOP, "old", 1), Action(STOP, "old", 0)]


def test_stopping_slot_blocks_its_index_and_is_not_stopped_twice() -> None:
    """A slot on its way out is neither stopped again nor started again until it is gone."""
    slots = [*_slots("web", "a", R), Slot("web", 1, "a", S)]
    assert plan({"web": Desired(2, "a")}, slots) == []
    assert plan({"web": Desired(1, "a")}, slots) == []


def test_scale_up_fills_gaps() -> None:
    """Slots 0 and 2 running, 4 wanted: start 1 and 3."""
    slots = [Slot("web", 0, "a", R), Slot("web", 2, "a", R)]
    assert plan({"web": Desired(4, "a")}, slots) == [Action(START, "web", 1), Action(START, "web", 3)]


def test_changed_spec_rolls_one_ready_slot_at_a_time() -> None:
    """All three ready on the old revision: replace only slot 0."""
    assert plan({"web": Desired(3, "b")}, _slots("web", "a", R, R, R)) == [Action(REPLACE, "web", 0)]


def test_roll_waits_until_the_replacement_is_ready() -> None:
    """Slot 0 is on the new revision but still pending: no further replacement; once ready, slot 1 goes."""
    slots = [Slot("web", 0, "b", P), *_slots("web", "a", R, R, R)[1:]]
    assert plan({"web": Desired(3, "b")}, slots) == []
    slots[0] = Slot("web", 0, "b", R)
    assert plan({"web": Desired(3, "b")}, slots) == [Action(REPLACE, "web", 1)]


def test_roll_waits_while_a_replacement_is_stopping() -> None:
    """A slot stopping for replacement holds the roll."""
    slots = [Slot("web", 0, "b", S), *_slots("web", "a", R, R)[1:]]
    assert plan({"web": Desired(2, "b")}, slots) == []


def test_slots_not_serving_are_replaced_at_once() -> None:
    """Outdated pending or backing-off slots take no traffic, so they are all replaced immediately."""
    slots = _slots("web", "a", B, P, R)
    assert plan({"web": Desired(3, "b")}, slots) == [Action(REPLACE, "web", 0), Action(REPLACE, "web", 1)]


def test_a_new_revision_that_never_gets_ready_stalls_the_roll() -> None:
    """The new revision crash-loops in slot 0: the old, serving slots are kept."""
    slots = [Slot("web", 0, "b", B), *_slots("web", "a", R, R, R)[1:]]
    assert plan({"web": Desired(3, "b")}, slots) == []


def test_scale_down_and_change_together() -> None:
    """3 → 1 with a new revision: stop 2 and 1, and roll slot 0 only after they are gone."""
    slots = _slots("web", "a", R, R, R)
    assert plan({"web": Desired(1, "b")}, slots) == [Action(STOP, "web", 2), Action(STOP, "web", 1)]
    assert plan({"web": Desired(1, "b")}, slots[:1]) == [Action(REPLACE, "web", 0)]


def _simulate(desired: dict[str, Desired], slots: list[Slot]) -> tuple[list[Slot], list[Action]]:
    """One round in a world that heals: actions complete at once and every slot is READY afterwards."""
    actions = plan(desired, slots)
    by_key = {(s.service, s.index): Slot(s.service, s.index, s.revision, R) for s in slots}
    for a in actions:
        key = (a.service, a.index)
        if a.kind is STOP:
            del by_key[key]
        else:
            by_key[key] = Slot(a.service, a.index, desired[a.service].revision, R)
    return list(by_key.values()), actions


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.tuples(st.integers(0, 6), st.sampled_from("xyz")), max_size=3),
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 7), st.sampled_from("xyz"), st.sampled_from([R, P, B])
        ),
        max_size=12,
    ),
)
def test_plan_converges_and_rolls_one_serving_slot_at_a_time(
    want: dict[str, tuple[int, str]], have: list[tuple[str, int, str, SlotState]]
) -> None:
    """From any state, repeated plans reach exactly the desired slots, replacing at most one READY slot per round."""
    desired = {name: Desired(n, rev) for name, (n, rev) in want.items()}
    slots = list({(s, i): Slot(s, i, r, st_) for s, i, r, st_ in have}.values())
    for _ in range(20):
        ready_before = {(s.service, s.index) for s in slots if s.state is R}
        slots, actions = _simulate(desired, slots)
        replaced_ready = [a for a in actions if a.kind is REPLACE and (a.service, a.index) in ready_before]
        assert len({a.service for a in replaced_ready}) == len(replaced_ready)  # ≤ 1 per service per round
    expected = sorted((name, i, d.revision) for name, d in desired.items() for i in range(d.count))
    assert sorted((s.service, s.index, s.revision) for s in slots) == expected
    assert plan(desired, slots) == []
