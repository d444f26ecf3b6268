"""Ring hash and Maglev: stable keys, ≈1/N movement when a peer joins or leaves, shares by weight, table balance."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jishi.core.lb import Endpoint, MaglevPicker, PeerSet, RingHashPicker
from jishi.core.lb.maglev import build_table, is_prime

KEYS = [f"client-{i}".encode() for i in range(4000)]
RNG = random.Random(0)


def _set(n: int, weights: list[int] | None = None) -> PeerSet:
    return PeerSet([Endpoint(f"peer-{i}", weights[i] if weights else 1) for i in range(n)])


def _owners(picker: RingHashPicker | MaglevPicker) -> dict[bytes, str]:
    out = {}
    for key in KEYS:
        ep = picker.pick(0.0, RNG, key)
        assert ep is not None
        out[key] = ep.key
    return out


def _moved(before: dict[bytes, str], after: dict[bytes, str]) -> float:
    return sum(1 for k in KEYS if before[k] != after[k]) / len(KEYS)


@pytest.mark.parametrize("cls", [RingHashPicker, MaglevPicker])
def test_same_key_same_peer_across_pickers_and_rebuilds(cls: type[RingHashPicker] | type[MaglevPicker]) -> None:
    """A key maps to the same peer on every pick and in a freshly built picker (another worker, a restart)."""
    first, second = _owners(cls(_set(7))), _owners(cls(_set(7)))
    assert first == second
    picker = cls(_set(7))
    assert all(picker.pick(0.0, RNG, b"client-1") is picker.pick(0.0, RNG, b"client-1") for _ in range(10))


@settings(max_examples=12, deadline=None)
@given(st.integers(3, 12))
def test_ring_moves_about_one_nth_of_keys_when_a_peer_joins_or_leaves(n: int) -> None:
    """Ring hash: adding an (N+1)th peer moves ≈1/(N+1) of keys, all of them to the new peer; removing one ≈1/N."""
    before = _owners(RingHashPicker(_set(n)))
    grown = _owners(RingHashPicker(_set(n + 1)))
    moved = _moved(before, grown)
    assert abs(moved - 1 / (n + 1)) < 0.35 / (n + 1) + 0.01
    assert all(grown[k] == f"peer-{n}" for k in KEYS if before[k] != grown[k])
    shrunk = _owners(RingHashPicker(PeerSet([Endpoint(f"peer-{i}") for i in range(1, n)])))
    assert abs(_moved(before, shrunk) - 1 / n) < 0.35 / n + 0.01
    assert all(before[k] == "peer-0" for k in KEYS if before[k] != shrunk[k])


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 8), st.data())
def test_ring_skipping_a_down_peer_equals_a_ring_without_it(n: int, data: st.DataObject) -> None:
    """Walking past a down peer sends every key where a ring rebuilt without that peer would."""
    down = data.draw(st.integers(0, n - 1))
    ps = _set(n)
    picker = RingHashPicker(ps, vnodes=256)
    ps.set_up(ps.endpoints[down], False, 0.0)
    rebuilt = RingHashPicker(PeerSet([Endpoint(f"peer-{i}") for i in range(n) if i != down]), vnodes=256)
    for key in KEYS[:500]:
        got, want = picker.pick(0.0, RNG, key), rebuilt.pick(0.0, RNG, key)
        assert got is not None and want is not None and got.key == want.key


def test_ring_respects_weights() -> None:
    """Weights 1:2:3:4 → shares of keys within 3 points of 10/20/30/40 %."""
    counts = Counter(_owners(RingHashPicker(_set(4, [1, 2, 3, 4]))).values())
    for i, share in enumerate((0.1, 0.2, 0.3, 0.4)):
        assert abs(counts[f"peer-{i}"] / len(KEYS) - share) < 0.03


@pytest.mark.parametrize(("n", "weights"), [(5, None), (13, None), (4, [1, 2, 3, 4]), (3, [5, 1, 1])])
def test_maglev_table_balance(n: int, weights: list[int] | None) -> None:
    """Each peer's share of the Maglev table is within 1 % (relative) of its weight share."""
    size = 65537
    table = build_table(_set(n, weights).endpoints, size)
    counts = Counter(table)
    w = weights or [1] * n
    for i in range(n):
        want = w[i] / sum(w)
        assert abs(counts[i] / size - want) <= 0.01 * want + 1 / size


@pytest.mark.parametrize("n", [5, 10, 20])
def test_maglev_minimal_disruption_when_a_peer_leaves(n: int) -> None:
    """Removing one of N peers reassigns its own slots and under 2 % of the others'."""
    size = 65537
    full = _set(n)
    before = [full.endpoints[i].key for i in build_table(full.endpoints, size)]
    rest = [ep for ep in _set(n).endpoints if ep.key != "peer-0"]
    after = [rest[i].key for i in build_table(rest, size)]
    moved_others = sum(1 for b, a in zip(before, after, strict=True) if b != "peer-0" and b != a) / size
    assert sum(1 for b in before if b == "peer-0") / size == pytest.approx(1 / n, rel=0.02)
    assert moved_others < 0.02


def test_maglev_lookup_moves_keys_only_off_a_down_peer() -> None:
    """A down peer's keys go elsewhere; every other key stays with its owner."""
    ps = _set(6)
    picker = MaglevPicker(ps, table_size=5003)
    before = _owners(picker)
    ps.set_up(ps.endpoints[2], False, 0.0)
    after = _owners(picker)
    assert all(after[k] != "peer-2" for k in KEYS)
    assert all(before[k] == after[k] for k in KEYS if before[k] != "peer-2")


def test_maglev_table_size_must_be_prime() -> None:
    """A composite table size is refused with a message saying why."""
    assert is_prime(65537) and not is_prime(65536)
    with pytest.raises(ValueError, match="prime"):
        MaglevPicker(_set(3), table_size=1000)


@pytest.mark.parametrize("cls", [RingHashPicker, MaglevPicker])
def test_no_key_falls_back_to_weighted_random(cls: type[RingHashPicker] | type[MaglevPicker]) -> None:
    """Without a hash key the picks spread over all candidates."""
    picker = cls(_set(4)) if cls is RingHashPicker else cls(_set(4), table_size=251)
    rng = random.Random(4)
    assert len({picker.pick(0.0, rng) for _ in range(200)}) == 4
