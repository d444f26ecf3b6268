"""A route's peer group: policies over the gateway's peers, fail marks, health, outlier ejection, slow start, panic."""

from __future__ import annotations

import random
from collections import Counter

from jishi.core.balancer import PeerSpec
from jishi.core.lb import OutlierConfig
from jishi.core.peer_group import EJECTED, FAILED, UNCHECKED, UNHEALTHY, GroupConfig, PeerGroup

RNG = random.Random(1)


def specs(*names: str, weight: int = 1) -> list[PeerSpec]:
    return [PeerSpec(key=f"svc/{n}", address="127.0.0.1", port=9000 + i, weight=weight) for i, n in enumerate(names)]


def picks(group: PeerGroup, n: int, now: float, key: bytes | None = None) -> list[str]:
    out = []
    for _ in range(n):
        peer = group.pick(now, RNG, key)
        assert peer is not None
        out.append(peer.key.split("/")[1])
    return out


def test_round_robin_group_alternates_like_the_plain_balancer() -> None:
    """round_robin over equal weights is strict alternation, in spec order."""
    group = PeerGroup(specs("a", "b", "c"), GroupConfig(), now=0.0)
    assert picks(group, 6, 0.0) == ["a", "b", "c", "a", "b", "c"]


def test_a_peer_joining_an_existing_route_ramps_up_under_slow_start() -> None:
    """Slow start 10 s: 2.5 s after joining the new peer has a quarter of its weight — 1 pick in 5 — and all of it
    after 10 s; the peers of a brand-new route do not ramp."""
    cfg = GroupConfig(slow_start=10.0)
    first = PeerGroup(specs("a"), cfg, now=50.0)
    assert picks(first, 3, 50.0) == ["a", "a", "a"]
    group = PeerGroup.build(specs("a", "b"), cfg, now=100.0, previous=first)
    assert Counter(picks(group, 5, 102.5)) == {"a": 4, "b": 1}
    assert Counter(picks(group, 10, 110.0)) == {"a": 5, "b": 5}


def test_panic_spreads_over_all_peers_when_too_few_are_up() -> None:
    """3 of 4 peers failed: below the 0.5 threshold every peer is picked again; with threshold 0.2 only the
    healthy one; the marks expire after fail_timeout at the housekeeping tick."""
    for threshold, expected in ((0.5, {"a", "b", "c", "d"}), (0.2, {"d"})):
        group = PeerGroup(specs("a", "b", "c", "d"), GroupConfig(panic_threshold=threshold, fail_timeout=2.0), now=0.0)
        for peer in group.peers[:3]:
            group.mark_failed(peer, 0.0)
        assert group.down_reasons("svc/a") == FAILED
        assert set(picks(group, 8, 1.0)) == expected
        assert group.peer_set.panic is (threshold == 0.5)
        group.tick(1.99)
        assert group.down_reasons("svc/a") == FAILED
        group.tick(2.0)
        assert group.down_reasons("svc/a") == 0
        assert set(picks(group, 8, 2.0)) == {"a", "b", "c", "d"}


def test_outlier_ejection_time_grows_with_repeats_and_is_capped() -> None:
    """3 consecutive 5xx eject for base 10 s, then 20 s, then the 25 s cap; each return is exact."""
    outlier = OutlierConfig(
        consecutive_5xx=3, base_ejection_time=10, max_ejection_time=25, interval=1000, max_ejection_percent=50
    )
    group = PeerGroup(specs("a", "b"), GroupConfig(outlier=outlier), now=0.0)
    a = group.peers[0]
    for start, until in ((0.0, 10.0), (11.0, 31.0), (32.0, 57.0)):
        assert group.finished(a, start, 0.01, 500) == []
        assert group.finished(a, start, 0.01, 503) == []
        (change,) = group.finished(a, start, 0.01, 500)
        assert change.ejected and change.until == until and change.peer == "svc/a"
        assert group.down_reasons("svc/a") == EJECTED and group.out_of_rotation() == ["svc/a"]
        assert set(picks(group, 4, start)) == {"b"}
        assert group.tick(until - 0.01) == []
        (back,) = group.tick(until)
        assert not back.ejected and back.at == until
        assert group.out_of_rotation() == []


def test_success_resets_the_consecutive_run_and_no_status_means_no_verdict() -> None:
    """A 2xx between 5xx restarts the count; status 0 (client went away) counts for nothing."""
    outlier = OutlierConfig(consecutive_5xx=2, max_ejection_percent=50)
    group = PeerGroup(specs("a", "b"), GroupConfig(outlier=outlier), now=0.0)
    a = group.peers[0]
    assert group.finished(a, 0, 0.01, 500) == []
    assert group.finished(a, 0, 0.01, 200) == []
    assert group.finished(a, 0, 0.01, 500) == []
    assert group.finished(a, 0, 0.01, 0) == []
    assert len(group.finished(a, 0, 0.01, 502)) == 1


def test_active_health_takes_a_peer_out_after_fall_and_back_after_rise() -> None:
    """fall 3: out on the third failure in a row; rise 2: back on the second pass in a row."""
    group = PeerGroup(specs("a", "b"), GroupConfig(), now=0.0)
    a = group.peers[0]
    results = [group.health(a, ok, 1.0, rise=2, fall=3) for ok in (False, False, True, False, False)]
    assert results == [None] * 5
    change = group.health(a, False, 2.0, rise=2, fall=3)
    assert change is not None and not change.up and change.run == 3
    assert group.down_reasons("svc/a") == UNHEALTHY and group.out_of_rotation() == ["svc/a"]
    assert set(picks(group, 4, 2.0)) == {"b"}
    assert group.health(a, True, 3.0, rise=2, fall=3) is None
    back = group.health(a, True, 4.0, rise=2, fall=3)
    assert back is not None and back.up
    assert set(picks(group, 4, 4.0)) == {"a", "b"}


def test_rebuild_with_the_same_peers_keeps_the_group_and_a_changed_one_keeps_peer_state() -> None:
    """Same config and peers → the very same group (a new registry generation only clears a fail mark); a new
    peer → a new group whose unchanged peers are the same objects, in-flight counts and health included."""
    cfg = GroupConfig(policy="least_request")
    group = PeerGroup(specs("a", "b"), cfg, now=0.0)
    a = group.peers[0]
    group.started(a, 0.0)
    group.mark_failed(a, 0.0)
    regenerated = specs("a", "b")
    regenerated[0] = PeerSpec(key="svc/a", address="127.0.0.1", port=9000, generation=7)
    same = PeerGroup.build(regenerated, cfg, now=1.0, previous=group)
    assert same is group and group.down_reasons("svc/a") == 0
    bigger = PeerGroup.build(regenerated + specs("x", "y", "c")[2:], cfg, now=1.0, previous=group)
    assert bigger is not group and bigger.peers[0] is a
    assert a.endpoint is not None and a.endpoint.active == 1
    bigger.finished(a, 2.0, 2.0, 200)
    assert a.endpoint.active == 0


def test_consistent_hash_group_sends_a_key_to_one_peer_and_a_retry_elsewhere() -> None:
    """ring_hash: one key → one peer every time; excluding that peer picks another; no key → any peer."""
    for policy in ("ring_hash", "maglev"):
        group = PeerGroup(specs("a", "b", "c"), GroupConfig(policy=policy), now=0.0)
        owners = {k: set(picks(group, 5, 0.0, f"user-{k}".encode())) for k in range(20)}
        assert all(len(o) == 1 for o in owners.values())
        assert len(set().union(*owners.values())) > 1
        first = group.pick(0.0, RNG, b"user-1")
        assert first is not None
        other = group.pick(0.0, RNG, b"user-1", [first])
        assert other is not None and other is not first


def test_peak_ewma_group_learns_latency_and_prefers_the_fast_peer() -> None:
    """peak_ewma: finished tries feed latency; after a slow answer from a the picks go to b."""
    group = PeerGroup(specs("a", "b"), GroupConfig(policy="peak_ewma"), now=0.0)
    assert not group.counts_only and PeerGroup(specs("a"), GroupConfig(), now=0.0).counts_only
    a, b = group.peers
    for peer, latency in ((a, 0.5), (b, 0.01)):
        group.started(peer, 1.0)
        group.finished(peer, 1.0, latency, 200)
    assert a.endpoint is not None and a.endpoint.ewma == 0.5 and a.endpoint.active == 0
    assert set(picks(group, 10, 1.0)) == {"b"}


def test_wait_for_pass_keeps_a_new_peer_out_until_its_first_check_passes() -> None:
    """wait_for_pass: a peer joining an existing route takes nothing while its checks fail (not even in panic: it
    does not count towards the threshold), is in after one pass (not `rise`), then ramps up under slow start; the
    peers of a brand-new route are in at once."""
    cfg = GroupConfig(wait_for_pass=True, slow_start=10.0, panic_threshold=0.9)
    first = PeerGroup(specs("a"), cfg, now=0.0)
    assert first.down_reasons("svc/a") == 0 and not first.unchecked()
    group = PeerGroup.build(specs("a", "b"), cfg, now=100.0, previous=first)
    new = group.get("svc/b")
    assert new is not None and group.down_reasons("svc/b") == UNCHECKED and group.unchecked()
    assert group.out_of_rotation() == ["svc/b"]
    assert set(picks(group, 20, 100.0)) == {"a"} and not group.peer_set.panic
    assert group.health(new, False, 101.0, rise=3, fall=1) is None
    assert group.down_reasons("svc/b") == UNCHECKED  # a failed first check is no ejection: it stays unchecked
    change = group.health(new, True, 102.0, rise=3, fall=1)
    assert change is not None and change.up and change.first
    assert group.down_reasons("svc/b") == 0 and not group.unchecked() and group.out_of_rotation() == []
    assert Counter(picks(group, 5, 104.5)) == {"a": 4, "b": 1}  # a quarter of its weight 2.5 s after admission
    assert Counter(picks(group, 10, 112.0)) == {"a": 5, "b": 5}
    later = group.health(new, False, 113.0, rise=3, fall=1)  # from now on the usual fall / rise rules
    assert later is not None and not later.up and group.down_reasons("svc/b") == UNHEALTHY


def test_without_wait_for_pass_a_new_peer_is_in_at_once() -> None:
    """The default (Envoy's): a peer new to the route takes traffic before any check."""
    first = PeerGroup(specs("a"), GroupConfig(), now=0.0)
    group = PeerGroup.build(specs("a", "b"), GroupConfig(), now=1.0, previous=first)
    assert group.down_reasons("svc/b") == 0 and set(picks(group, 4, 1.0)) == {"a", "b"}
