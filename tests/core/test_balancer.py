"""Smooth weighted round-robin: exact shares, smoothness, backup tier, exclusion and failure marks."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from jishi.core.balancer import Balancer, PeerSpec


def specs(weights: list[int], backups: list[bool] | None = None) -> list[PeerSpec]:
    backups = backups or [False] * len(weights)
    return [
        PeerSpec(f"p{i}", "127.0.0.1", 10000 + i, w, b) for i, (w, b) in enumerate(zip(weights, backups, strict=True))
    ]


def reference_swrr(weights: list[int], n: int) -> list[int]:
    """nginx's algorithm written as plainly as possible, over indices."""
    current = [0] * len(weights)
    out = []
    for _ in range(n):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= sum(weights)
        out.append(best)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=6), st.integers(0, 40), st.integers(1, 3))
def test_any_window_of_total_weight_picks_gives_each_peer_its_weight(
    weights: list[int], skip: int, rounds: int
) -> None:
    """Over any window of sum(weights) consecutive picks each peer is picked exactly its weight."""
    bal = Balancer(specs(weights))
    for _ in range(skip):
        bal.pick(0.0)
    total = sum(weights)
    for _ in range(rounds):
        window = Counter(bal.pick(0.0).key for _ in range(total))  # type: ignore[union-attr]
        assert window == Counter({f"p{i}": w for i, w in enumerate(weights)})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=6), st.integers(1, 60))
def test_picks_equal_the_reference_implementation(weights: list[int], n: int) -> None:
    """The balancer's sequence of picks is exactly the reference nginx sequence."""
    bal = Balancer(specs(weights))
    got = [int(bal.pick(0.0).key[1:]) for _ in range(n)]  # type: ignore[union-attr]
    assert got == reference_swrr(weights, n)


def test_heavy_peer_is_spread_not_bunched() -> None:
    """Weights 5,1,1 give nginx's smooth order a a b a c a a."""
    bal = Balancer(specs([5, 1, 1]))
    assert [bal.pick(0.0).key for _ in range(7)] == ["p0", "p0", "p1", "p0", "p2", "p0", "p0"]  # type: ignore[union-attr]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=6), st.integers(1, 30))
def test_backup_tier_used_only_when_no_primary_is_available(peers: list[tuple[int, bool]], n: int) -> None:
    """With any primary peer up only primaries are picked; with all primaries failed only backups are."""
    bal = Balancer(specs([w for w, _ in peers], [b for _, b in peers]))
    has_primary = any(not b for _, b in peers)
    for _ in range(n):
        peer = bal.pick(0.0)
        assert peer is not None
        assert peer.backup is (not has_primary)
    for p in bal.peers:
        if not p.backup:
            bal.mark_failed(p, 0.0)
    has_backup = any(b for _, b in peers)
    for _ in range(n):
        peer = bal.pick(1.0)
        assert peer is not None
        if has_backup:
            assert peer.backup


def test_exclusion_skips_tried_peers_and_returns_none_when_all_tried() -> None:
    """A retry never gets a peer it already tried; with every peer tried there is none."""
    bal = Balancer(specs([1, 1, 1]))
    tried: list = []
    for _ in range(3):
        peer = bal.pick(0.0, tried)
        assert peer is not None and peer not in tried
        tried.append(peer)
    assert bal.pick(0.0, tried) is None


def test_failed_peer_is_skipped_until_fail_timeout_passes() -> None:
    """A marked peer gets no picks for fail_timeout seconds, then rejoins."""
    bal = Balancer(specs([1, 1]), fail_timeout=2.0)
    p0 = bal.peers[0]
    bal.mark_failed(p0, 10.0)
    assert {bal.pick(11.9).key for _ in range(6)} == {"p1"}  # type: ignore[union-attr]
    assert {bal.pick(12.0).key for _ in range(6)} == {"p0", "p1"}  # type: ignore[union-attr]


def test_mark_ok_clears_a_failure_mark() -> None:
    """mark_ok puts a failed peer back at once."""
    bal = Balancer(specs([1, 1]))
    bal.mark_failed(bal.peers[0], 0.0)
    bal.mark_ok(bal.peers[0])
    assert {bal.pick(0.5).key for _ in range(4)} == {"p0", "p1"}  # type: ignore[union-attr]


def test_all_peers_failed_panics_and_still_picks() -> None:
    """When every peer is marked failed, picks ignore the marks instead of refusing."""
    bal = Balancer(specs([1, 1]))
    for p in bal.peers:
        bal.mark_failed(p, 0.0)
    assert bal.pick(1.0) is not None


def test_empty_balancer_picks_nothing() -> None:
    """No peers → None."""
    assert Balancer().pick(0.0) is None


def test_rebuild_keeps_state_of_unchanged_peers_and_resets_on_new_generation() -> None:
    """A rebuilt balancer keeps current weights and marks of the same peers; a new generation clears marks."""
    old = Balancer(specs([1, 1, 1]))
    old.pick(0.0)
    old.mark_failed(old.peers[1], 0.0)
    new = Balancer(specs([1, 1, 1]), previous=old)
    assert [p.current for p in new.peers] == [p.current for p in old.peers]
    assert new.peers[1].failed_until == old.peers[1].failed_until
    regen = [PeerSpec(s.key, s.address, s.port, s.weight, s.backup, generation=7) for s in specs([1, 1, 1])]
    assert Balancer(regen, previous=old).peers[1].failed_until == 0.0


def test_duplicate_keys_and_bad_weights_are_refused() -> None:
    """Two peers with one key, or a weight below 1, raise ValueError."""
    import pytest

    with pytest.raises(ValueError, match="twice"):
        Balancer([PeerSpec("a", "h", 1), PeerSpec("a", "h", 2)])
    with pytest.raises(ValueError, match="weight"):
        Balancer([PeerSpec("a", "h", 1, weight=0)])
