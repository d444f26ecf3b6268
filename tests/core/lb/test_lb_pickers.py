"""Random, least connections, P2C and peak-EWMA pickers against simple reference models."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jishi.core.lb import (
    POLICIES,
    Endpoint,
    EwmaPicker,
    LeastConnPicker,
    P2CPicker,
    PeerSet,
    RandomPicker,
    make_picker,
)


def _set(weights: list[int]) -> PeerSet:
    return PeerSet([Endpoint(f"p{i}", w) for i, w in enumerate(weights)])


def _assert_shares(counts: Counter[str], weights: dict[str, float], n: int, tolerance: float) -> None:
    total = sum(weights.values())
    for key, w in weights.items():
        assert abs(counts[key] / n - w / total) < tolerance, (key, counts[key] / n, w / total)


@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.integers(0, 2**32))
def test_random_picks_follow_the_weights(weights: list[int], seed: int) -> None:
    """Weighted random: each peer's share of 6000 seeded picks is within 3 points of its weight share."""
    ps = _set(weights)
    picker = RandomPicker(ps)
    rng = random.Random(seed)
    n = 6000
    counts = Counter(picker.pick(0.0, rng).key for _ in range(n))  # type: ignore[union-attr]
    _assert_shares(counts, {f"p{i}": w for i, w in enumerate(weights)}, n, 0.03)


def test_least_conn_picks_the_lowest_load_per_weight() -> None:
    """active / weight decides: 4 in flight on weight 4 beats 2 in flight on weight 1."""
    ps = _set([4, 1, 2])
    a, b, c = ps.endpoints
    a.active, b.active, c.active = 4, 2, 3
    assert LeastConnPicker(ps).pick(0.0, random.Random(0)) is a


@given(st.lists(st.integers(1, 4), min_size=2, max_size=6), st.integers(0, 2**32))
def test_least_conn_ties_are_shared_by_weight(weights: list[int], seed: int) -> None:
    """With every peer idle (all tied) picks are shared by weight, within 3 points over 6000 seeded picks."""
    ps = _set(weights)
    picker = LeastConnPicker(ps)
    rng = random.Random(seed)
    n = 6000
    counts = Counter(picker.pick(0.0, rng).key for _ in range(n))  # type: ignore[union-attr]
    _assert_shares(counts, {f"p{i}": w for i, w in enumerate(weights)}, n, 0.03)


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 6)), min_size=1, max_size=8), st.integers(0, 2**32))
def test_least_conn_matches_the_reference_minimum(peers: list[tuple[int, int]], seed: int) -> None:
    """The pick always has the minimal active / weight of all candidates (checked exactly in fractions)."""
    ps = _set([w for w, _ in peers])
    for ep, (_, active) in zip(ps.endpoints, peers, strict=True):
        ep.active = active
    got = LeastConnPicker(ps).pick(0.0, random.Random(seed))
    assert got is not None
    assert all(got.active * ep.weight <= ep.active * got.weight for ep in ps.endpoints)


@given(st.lists(st.integers(0, 9), min_size=2, max_size=8), st.lists(st.integers(1, 3), min_size=8, max_size=8))
def test_p2c_never_picks_the_worse_of_its_two_choices(actives: list[int], weights: list[int]) -> None:
    """Replaying the picker's two draws, the pick's (active+1)/weight is never above the other choice's."""
    ps = _set(weights[: len(actives)])
    for ep, active in zip(ps.endpoints, actives, strict=True):
        ep.active = active
    for seed in range(20):
        got = P2CPicker(ps).pick(0.0, random.Random(seed))
        replay = random.Random(seed)
        n = len(actives)
        i = int(replay.random() * n)
        j = int(replay.random() * (n - 1))
        j = j + 1 if j >= i else j
        a, b = ps.endpoints[i], ps.endpoints[j]
        assert got in (a, b)
        other = b if got is a else a
        assert (got.active + 1) * other.weight <= (other.active + 1) * got.weight


def test_p2c_spreads_load_better_than_random() -> None:
    """A queue simulation: the busiest of 10 peers holds fewer requests under P2C than under random."""

    def max_queue(picker_cls: type[RandomPicker] | type[P2CPicker]) -> int:
        ps = _set([1] * 10)
        picker = picker_cls(ps)
        rng = random.Random(3)
        peak = 0
        inflight: list[Endpoint] = []
        for _ in range(20_000):
            ep = picker.pick(0.0, rng)
            assert ep is not None
            picker.on_start(ep, 0.0)
            inflight.append(ep)
            if len(inflight) > 30:  # a request ends: a random one of those in flight
                done = inflight.pop(int(rng.random() * len(inflight)))
                picker.on_finish(done, 0.0, 0.0)
            peak = max(peak, max(e.active for e in ps.endpoints))
        return peak

    assert max_queue(P2CPicker) < max_queue(RandomPicker)


def test_ewma_prefers_the_faster_peer() -> None:
    """After a few samples, 10 ms vs 100 ms, nearly every pick goes to the 10 ms peer."""
    ps = _set([1, 1])
    fast, slow = ps.endpoints
    picker = EwmaPicker(ps, decay=10.0)
    for t in range(5):
        for ep, latency in ((fast, 0.010), (slow, 0.100)):
            picker.on_start(ep, float(t))
            picker.on_finish(ep, float(t) + latency, latency)
    rng = random.Random(1)
    picks = Counter(picker.pick(5.0, rng) for _ in range(1000))
    assert picks[fast] == 1000


def test_ewma_peak_is_taken_at_once_and_lower_samples_pull_down_gradually() -> None:
    """A sample above the estimate replaces it; a lower one moves it by 1 - exp(-dt/decay) of the gap."""
    ps = _set([1])
    (ep,) = ps.endpoints
    picker = EwmaPicker(ps, decay=10.0)
    picker.on_finish(ep, 0.0, 0.050)
    picker.on_finish(ep, 1.0, 0.200)
    assert ep.ewma == 0.200
    picker.on_finish(ep, 1.0 + 10.0 * 0.6931471805599453, 0.100)  # w = 1/2
    assert ep.ewma == pytest.approx(0.150)


def test_ewma_estimate_decays_back_so_a_slow_peer_is_tried_again() -> None:
    """A peer slow once: its estimate halves every decay*ln2 seconds and it wins picks again once it is cheaper."""
    ps = _set([1, 1])
    was_slow, steady = ps.endpoints
    picker = EwmaPicker(ps, decay=10.0, default_rtt=0.030)
    picker.on_finish(was_slow, 0.0, 1.0)
    picker.on_finish(steady, 0.0, 0.020)
    assert picker.rtt(was_slow, 10.0 * 0.6931471805599453) == pytest.approx(0.5)
    rng = random.Random(2)
    assert all(picker.pick(1.0, rng) is steady for _ in range(100))
    # Keep the steady peer's estimate fresh at 20 ms; the idle slow one decays below it after ~40 s.
    picker.on_finish(steady, 60.0, 0.020)
    assert picker.rtt(was_slow, 60.0) < 0.020
    assert picker.rtt(steady, 60.0) == pytest.approx(0.020)
    assert all(picker.pick(60.0, rng) is was_slow for _ in range(100))


def test_ewma_cost_counts_requests_in_flight() -> None:
    """Same latency, 3 requests queued on one peer: the idle one is cheaper and wins."""
    ps = _set([1, 1])
    busy, idle = ps.endpoints
    picker = EwmaPicker(ps)
    for ep in (busy, idle):
        picker.on_finish(ep, 0.0, 0.050)
    busy.active = 3
    assert picker.cost(busy, 0.0) == pytest.approx(4 * picker.cost(idle, 0.0))
    assert picker.pick(0.0, random.Random(0)) is idle


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_policy_honours_exclusion_and_the_backup_tier(policy: str) -> None:
    """For each policy: excluded peers are never picked, and backups serve only when no primary is left."""
    ps = PeerSet([Endpoint("a"), Endpoint("b"), Endpoint("z", backup=True)])
    a, b, z = ps.endpoints
    picker = make_picker(policy, ps, **({"table_size": 251} if policy == "maglev" else {}))
    rng = random.Random(5)
    for i in range(200):
        key = f"k{i}".encode()
        assert picker.pick(0.0, rng, key) in (a, b)
        assert picker.pick(0.0, rng, key, exclude={a}) is b
        assert picker.pick(0.0, rng, key, exclude={a, b}) is z
        assert picker.pick(0.0, rng, key, exclude={a, b, z}) is None


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_policy_skips_a_down_peer(policy: str) -> None:
    """For each policy: a peer taken out of the rotation gets no picks while enough others are up."""
    ps = PeerSet([Endpoint(f"p{i}") for i in range(4)])
    picker = make_picker(policy, ps, **({"table_size": 251} if policy == "maglev" else {}))
    ps.set_up(ps.endpoints[2], False, 0.0)
    rng = random.Random(6)
    picks = {picker.pick(0.0, rng, f"k{i}".encode()) for i in range(400)}
    assert ps.endpoints[2] not in picks and len(picks) == 3


def test_unknown_policy_names_the_choices() -> None:
    """make_picker refuses an unknown name and lists the known ones."""
    with pytest.raises(ValueError, match="least_request"):
        make_picker("fastest", _set([1]))
