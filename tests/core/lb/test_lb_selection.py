"""Which peers a pick may choose: backup tier, panic threshold, exclusion; and the slow-start ramp, at exact times."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jishi.core.lb import Endpoint, PeerSet, RandomPicker, SlowStart, select


def _peers(n: int, backups: int = 0) -> list[Endpoint]:
    return [Endpoint(f"p{i}") for i in range(n)] + [Endpoint(f"b{i}", backup=True) for i in range(backups)]


def _keys(eps: tuple[Endpoint, ...]) -> list[str]:
    return [ep.key for ep in eps]


def test_healthy_primary_tier_is_chosen_and_backup_is_not() -> None:
    """With the primary tier healthy, only its up peers are candidates; the backup tier waits."""
    ps = PeerSet(_peers(4, backups=2))
    ps.set_up(ps.primary[3], False, 0.0)
    sel = ps.select()
    assert _keys(sel.candidates) == ["p0", "p1", "p2"] and not sel.panic


def test_backup_tier_takes_over_when_no_primary_is_up() -> None:
    """nginx semantics: backup peers are used only when no primary peer is available."""
    ps = PeerSet(_peers(2, backups=2), panic_threshold=0.0)
    for ep in ps.primary:
        ps.set_up(ep, False, 0.0)
    assert _keys(ps.select().candidates) == ["b0", "b1"]


def test_backup_tier_serves_a_retry_that_excluded_every_primary() -> None:
    """A retry that has tried every primary peer goes to the backup tier."""
    ps = PeerSet(_peers(2, backups=1))
    assert _keys(ps.select(exclude=set(ps.primary)).candidates) == ["b0"]


@pytest.mark.parametrize(
    ("up", "threshold", "expected", "panic"),
    [
        (5, 0.5, ["p0", "p1", "p2", "p3", "p4"], False),
        (3, 0.5, ["p0", "p1", "p2"], False),  # 3/6 = 0.5 is not below the threshold
        (2, 0.5, ["p0", "p1", "p2", "p3", "p4", "p5"], True),  # 2/6 < 0.5: all peers, health ignored
        (2, 0.3, ["p0", "p1"], False),
        (0, 0.3, ["p0", "p1", "p2", "p3", "p4", "p5"], True),
        (0, 0.0, [], False),  # panic off: nothing up means nothing to pick
        (1, 0.0, ["p0"], False),
    ],
)
def test_panic_threshold_exact(up: int, threshold: float, expected: list[str], panic: bool) -> None:
    """Below the healthy share `threshold` the candidates are every peer; at or above it only the up ones."""
    ps = PeerSet(_peers(6), panic_threshold=threshold)
    for ep in ps.primary[up:]:
        ps.set_up(ep, False, 0.0)
    sel = ps.select()
    assert (_keys(sel.candidates), sel.panic) == (expected, panic)
    assert ps.panic is panic


def test_panicking_primary_tier_overflows_to_a_healthy_backup_tier() -> None:
    """When the primary tier is below the threshold but the backup tier is healthy, the backup tier serves."""
    ps = PeerSet(_peers(4, backups=2), panic_threshold=0.5)
    for ep in ps.primary[1:]:
        ps.set_up(ep, False, 0.0)
    sel = ps.select()
    assert (_keys(sel.candidates), sel.panic) == (["b0", "b1"], False)


def test_exclusion_does_not_count_against_health() -> None:
    """Excluding peers for a retry neither triggers panic nor lets excluded peers back in."""
    ps = PeerSet(_peers(4), panic_threshold=0.5)
    sel = ps.select(exclude={ps.primary[0], ps.primary[1], ps.primary[2]})
    assert (_keys(sel.candidates), sel.panic) == (["p3"], False)
    assert ps.select(exclude=set(ps.primary)).candidates == ()


def test_pick_returns_none_only_when_nothing_is_left() -> None:
    """Every peer excluded → None; a down peer under panic is still picked."""
    ps = PeerSet(_peers(1), panic_threshold=0.5)
    picker = RandomPicker(ps)
    rng = random.Random(0)
    assert picker.pick(0.0, rng, exclude={ps.primary[0]}) is None
    ps.set_up(ps.primary[0], False, 0.0)
    assert picker.pick(0.0, rng) is ps.primary[0]


@st.composite
def _health(draw: st.DrawFn) -> tuple[list[bool], list[bool], float, list[int]]:
    prim = draw(st.lists(st.booleans(), min_size=0, max_size=6))
    back = draw(st.lists(st.booleans(), min_size=0, max_size=4))
    threshold = draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
    excluded = draw(st.lists(st.integers(0, len(prim) + len(back)), max_size=4))
    return prim, back, threshold, excluded


@given(_health())
def test_selection_matches_the_reference_rules(case: tuple[list[bool], list[bool], float, list[int]]) -> None:
    """select() agrees with a literal reading of the rules on arbitrary health, tiers, thresholds and exclusions."""
    prim_up, back_up, threshold, excl_idx = case
    prim = [Endpoint(f"p{i}") for i in range(len(prim_up))]
    back = [Endpoint(f"b{i}", backup=True) for i in range(len(back_up))]
    for ep, up in zip(prim + back, prim_up + back_up, strict=True):
        ep.up = up
    everyone = prim + back
    exclude = {everyone[i] for i in excl_idx if i < len(everyone)}
    expected: tuple[list[Endpoint], bool] = ([], False)
    for tier in (prim, back):
        ok = [p for p in tier if p.up and p not in exclude]
        if tier and ok and sum(p.up for p in tier) / len(tier) >= threshold:
            expected = (ok, False)
            break
    else:
        if threshold > 0:
            left_p = [p for p in prim if p not in exclude]
            left_b = [p for p in back if p not in exclude]
            if left_p or left_b:
                expected = (left_p or left_b, True)
    sel = select(prim, back, threshold, exclude)
    assert (list(sel.candidates), sel.panic) == expected


def test_slow_start_ramp_exact_at_given_times() -> None:
    """Linear ramp over 10 s with a 10 % floor: factors exact at 0, 0.5, 2.5, 5, 10 s."""
    ramp = SlowStart(10.0, aggression=1.0, min_weight_percent=10.0)
    assert [ramp.factor(100.0, 100.0 + t) for t in (0.0, 0.5, 2.5, 5.0, 10.0, 60.0)] == [0.1, 0.1, 0.25, 0.5, 1.0, 1.0]


def test_slow_start_aggression_shapes_the_ramp() -> None:
    """Aggression 2 gives sqrt(t/window) (more traffic early); 0.5 gives (t/window)^2 (later)."""
    fast = SlowStart(16.0, aggression=2.0, min_weight_percent=0.0)
    slow = SlowStart(16.0, aggression=0.5, min_weight_percent=0.0)
    assert fast.factor(0.0, 4.0) == 0.5
    assert slow.factor(0.0, 4.0) == 0.0625
    assert fast.weight(8, 0.0, 4.0) == 4.0


def test_slow_start_applies_to_a_peer_coming_back() -> None:
    """A peer set up again ramps from that moment: effective weights exact at given times, then equal again."""
    ps = PeerSet([Endpoint("a", 4), Endpoint("b", 4)], slow_start=SlowStart(10.0))
    ps.set_up(ps.endpoints[1], False, 0.0)
    ps.set_up(ps.endpoints[1], True, 100.0)
    cands = ps.select().candidates
    assert ps.weights(cands, 100.0) == [4.0, 0.4]
    assert ps.weights(cands, 105.0) == [4.0, 2.0]
    assert ps.weights(cands, 110.0) is None  # ramp over: equal weights, the fast path


def test_slow_start_shares_traffic_by_ramped_weight() -> None:
    """Half way through its ramp a new peer gets a third of the random picks next to an old peer of equal weight."""
    ps = PeerSet([Endpoint("old"), Endpoint("new", since=100.0)], slow_start=SlowStart(10.0))
    picker = RandomPicker(ps)
    rng = random.Random(7)
    picks = [picker.pick(105.0, rng) for _ in range(30_000)]
    share = sum(1 for p in picks if p is ps.endpoints[1]) / len(picks)
    assert abs(share - 1 / 3) < 0.015


def test_new_peer_set_keeps_state_of_known_peers() -> None:
    """Rebuilding the set keeps health, in-flight counts and ramp start of peers with the same key."""
    old = PeerSet([Endpoint("a"), Endpoint("b")])
    old.set_up(old.endpoints[0], False, 1.0)
    old.endpoints[1].active = 3
    new = PeerSet([Endpoint("a"), Endpoint("b"), Endpoint("c")], previous=old)
    a, b, c = new.endpoints
    assert (a.up, b.active, c.up) == (False, 3, True)
    assert new.version > old.version


def test_invalid_settings_are_refused_with_a_reason() -> None:
    """Bad weights, thresholds, duplicate keys and ramp settings raise ValueError naming the problem."""
    with pytest.raises(ValueError, match="weight"):
        Endpoint("a", 0)
    with pytest.raises(ValueError, match="panic_threshold"):
        PeerSet([], panic_threshold=1.5)
    with pytest.raises(ValueError, match="twice"):
        PeerSet([Endpoint("a"), Endpoint("a")])
    with pytest.raises(ValueError, match="aggression"):
        SlowStart(10.0, aggression=0.0)
