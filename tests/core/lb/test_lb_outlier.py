"""Outlier detection, exact-time scenarios: consecutive errors, growing ejection time, max percent, success rate."""

from __future__ import annotations

import pytest

from jishi.core.lb import Change, Outcome, OutlierConfig, OutlierDetector, Reason, classify

PEERS = [f"p{i}" for i in range(10)]


def _fail(od: OutlierDetector[str], peer: str, times: int, now: float, status: int = 500) -> list[Change[str]]:
    changes: list[Change[str]] = []
    for _ in range(times):
        changes += od.on_result(peer, status, now)
    return changes


def test_classify_statuses() -> None:
    """< 500 is success, 502/503/504 gateway errors, other 5xx server errors."""
    assert [classify(s) for s in (200, 404, 500, 502, 503, 504, 501)] == [
        Outcome.SUCCESS,
        Outcome.SUCCESS,
        Outcome.SERVER_ERROR,
        Outcome.GATEWAY_ERROR,
        Outcome.GATEWAY_ERROR,
        Outcome.GATEWAY_ERROR,
        Outcome.SERVER_ERROR,
    ]


def test_five_consecutive_5xx_eject_for_the_base_time_and_return_exactly_then() -> None:
    """The 5th 5xx in a row ejects at once for 30 s; tick just before keeps it out, tick at 30 s returns it."""
    od = OutlierDetector(OutlierConfig(), PEERS, now=0.0)
    assert _fail(od, "p1", 4, 1.0) == []
    assert od.on_result("p1", 503, 2.0) == [Change("p1", True, Reason.CONSECUTIVE_5XX, 2.0, 32.0)]
    assert od.is_ejected("p1") and od.next_deadline() == 10.0
    assert od.tick(31.999) == []
    assert od.tick(32.0) == [Change("p1", False, Reason.RETURNED, 32.0)]
    assert not od.is_ejected("p1")


def test_a_success_resets_the_run_of_errors() -> None:
    """4 errors, a 404 (a success for outlier purposes), 4 errors: not ejected."""
    od = OutlierDetector(OutlierConfig(), PEERS)
    _fail(od, "p1", 4, 1.0)
    od.on_result("p1", 404, 1.0)
    assert _fail(od, "p1", 4, 1.0) == [] and not od.is_ejected("p1")


def test_success_counts_like_a_successful_result() -> None:
    """`success` resets the run of errors and counts towards the success rate, as `on_result` with a 200 does."""
    cfg = OutlierConfig(success_rate_minimum_hosts=2, success_rate_request_volume=10, success_rate_stdev_factor=0.5)
    od = OutlierDetector(cfg, ["a", "b", "c"], now=0.0)
    _fail(od, "a", 4, 1.0)
    od.success("a")
    assert _fail(od, "a", 4, 1.0) == [] and not od.is_ejected("a")
    for _ in range(10):
        od.success("b")
        od.success("c")
    od.success("a")
    od.success("unknown")  # a peer the detector does not watch is ignored
    # a: 2 successes in 10 results, b and c: all successes; the interval's end ejects a for its success rate
    assert od.tick(10.0) == [Change("a", True, Reason.SUCCESS_RATE, 10.0, 40.0)]


def test_second_ejection_lasts_twice_the_base_time() -> None:
    """Ejected at 0 for 30 s, back at 30, ejected again at 35 for 60 s, back at 95."""
    cfg = OutlierConfig(interval=1000.0)
    od = OutlierDetector(cfg, PEERS, now=0.0)
    assert _fail(od, "p2", 5, 0.0)[0].until == 30.0
    assert od.tick(30.0)[0].reason is Reason.RETURNED
    assert _fail(od, "p2", 5, 35.0) == [Change("p2", True, Reason.CONSECUTIVE_5XX, 35.0, 95.0)]
    assert od.tick(94.0) == [] and od.tick(95.0) == [Change("p2", False, Reason.RETURNED, 95.0)]


def test_ejection_time_is_capped_at_max() -> None:
    """base 30 s × n, capped at max 100 s: 30, 60, 90, 100, 100."""
    cfg = OutlierConfig(base_ejection_time=30.0, max_ejection_time=100.0)
    assert [cfg.ejection_time(n) for n in range(1, 6)] == [30.0, 60.0, 90.0, 100.0, 100.0]


def test_ejection_multiplier_is_forgiven_one_step_per_healthy_interval() -> None:
    """After returning, each interval spent in the rotation (a whole one since the return) takes one off n."""
    od = OutlierDetector(OutlierConfig(interval=10.0), PEERS, now=0.0)
    _fail(od, "p3", 5, 1.0)  # n = 1, until 31
    od.tick(31.0)
    _fail(od, "p3", 5, 32.0)  # n = 2, until 92
    assert od.ejections("p3") == 2
    od.tick(92.0)  # returned at 92; interval ends at 40, 50, ... 90 have passed while ejected
    od.tick(100.0)  # back only 8 s: not forgiven yet
    assert od.ejections("p3") == 2
    od.tick(110.0)
    assert od.ejections("p3") == 1
    od.tick(120.0)
    assert od.ejections("p3") == 0
    assert _fail(od, "p3", 5, 121.0)[0].until == 151.0  # a fresh start: base time again


def test_consecutive_gateway_failures_eject_when_enabled() -> None:
    """With consecutive_gateway_failure 3: three 502/503/504 in a row eject; a plain 500 breaks the run."""
    od = OutlierDetector(OutlierConfig(consecutive_gateway_failure=3, consecutive_5xx=0), PEERS)
    _fail(od, "p4", 2, 1.0, 502)
    od.on_result("p4", 500, 1.0)
    assert _fail(od, "p4", 2, 1.0, 504) == []
    assert od.on_result("p4", Outcome.GATEWAY_ERROR, 2.0) == [
        Change("p4", True, Reason.CONSECUTIVE_GATEWAY_FAILURE, 2.0, 32.0)
    ]


def test_max_ejection_percent_is_respected_but_one_peer_can_always_go() -> None:
    """20 % of 10 peers: two are ejected, the third stays; with 5 % one peer may still be ejected."""
    od = OutlierDetector(OutlierConfig(max_ejection_percent=20.0), PEERS)
    assert _fail(od, "p0", 5, 1.0) and _fail(od, "p1", 5, 1.0)
    assert _fail(od, "p2", 5, 1.0) == [] and not od.is_ejected("p2")
    assert od.ejected() == ["p0", "p1"]
    od.tick(31.0)  # both return; now p2's next error (its run continued) can eject it
    assert od.on_result("p2", 500, 31.0)[0].peer == "p2"
    low = OutlierDetector(OutlierConfig(max_ejection_percent=5.0), PEERS)
    assert _fail(low, "p0", 5, 1.0) and _fail(low, "p1", 5, 1.0) == []


def test_success_rate_ejects_the_outlier_at_the_end_of_the_interval() -> None:
    """Five peers at 100 % and one at 50 %: at the interval end (10 s) the 50 % one is ejected, not before."""
    od = OutlierDetector(OutlierConfig(consecutive_5xx=0, max_ejection_percent=50.0), PEERS[:6], now=0.0)
    for peer in PEERS[:5]:
        for _ in range(100):
            od.on_result(peer, 200, 5.0)
    for i in range(100):
        od.on_result("p5", 500 if i % 2 else 200, 5.0)
    assert od.tick(9.9) == []
    assert od.tick(10.0) == [Change("p5", True, Reason.SUCCESS_RATE, 10.0, 40.0)]
    assert od.next_deadline() == 20.0


def test_success_rate_needs_enough_hosts_and_enough_requests() -> None:
    """Too few peers with volume (4 < 5), or the outlier below the request volume: no ejection."""
    od = OutlierDetector(OutlierConfig(consecutive_5xx=0, max_ejection_percent=100.0), PEERS[:5], now=0.0)
    for peer in PEERS[:3]:
        for _ in range(100):
            od.on_result(peer, 200, 1.0)
    for i in range(100):
        od.on_result("p3", 500 if i % 2 else 200, 1.0)
    for i in range(99):  # one short of the volume
        od.on_result("p4", 500 if i % 10 == 0 else 200, 1.0)
    assert od.tick(10.0) == []
    # Counters start over each interval: the same peers, enough volume now for all five → p3 goes.
    for peer in PEERS[:3]:
        for _ in range(100):
            od.on_result(peer, 200, 11.0)
    for i in range(100):
        od.on_result("p3", 500 if i % 2 else 200, 11.0)
    for _ in range(100):
        od.on_result("p4", 200, 11.0)
    assert [c.peer for c in od.tick(20.0)] == ["p3"]


def test_uniform_success_rates_eject_nobody() -> None:
    """All peers equally flaky (stdev 0): nothing falls below mean − 1.9 × stdev."""
    od = OutlierDetector(OutlierConfig(consecutive_5xx=0), PEERS, now=0.0)
    for peer in PEERS:
        for i in range(100):
            od.on_result(peer, 500 if i % 4 == 0 else 200, 1.0)
    assert od.tick(10.0) == []


def test_unknown_peers_are_ignored_and_removed_peers_forgotten() -> None:
    """Results for a peer never added are ignored; a removed peer is no longer ejected or counted."""
    od = OutlierDetector(OutlierConfig(), ["a"])
    assert _fail(od, "zz", 10, 1.0) == []
    _fail(od, "a", 5, 1.0)
    od.remove("a")
    assert od.ejected() == [] and od.next_deadline() == 10.0


def test_bad_settings_are_refused() -> None:
    """Negative thresholds or a percent above 100 raise ValueError naming the setting."""
    with pytest.raises(ValueError, match="consecutive_5xx"):
        OutlierConfig(consecutive_5xx=-1)
    with pytest.raises(ValueError, match="max_ejection_percent"):
        OutlierConfig(max_ejection_percent=150.0)
