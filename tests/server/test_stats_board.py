"""`StatsBoard`: totals, window rates and quantiles from gateway reports, at exact times."""

from __future__ import annotations

from typing import Any

import pytest

from jishi.gateway.stats import B0, BOUNDS, ROW_LEN, SUM
from jishi.server.stats import StatsBoard, quantile


def row(ok: int = 0, err: int = 0, buckets: dict[float, int] | None = None) -> list[Any]:
    """A report row with `ok` 2xx and `err` 5xx answers and latency counts per bucket bound."""
    out: list[Any] = [0] * ROW_LEN
    out[2], out[5] = ok, err
    for bound, n in (buckets or {}).items():
        out[B0 + BOUNDS.index(bound)] = n
    out[SUM] = 0.0
    return out


def report(rows: list[list[Any]], started_at: float = 90.0, **kw: Any) -> dict[str, Any]:
    return {"started_at": started_at, "workers": 1, "connections": 3, "rows": rows, **kw}


def test_totals_are_cumulative_and_window_figures_come_from_deltas() -> None:
    """Two reports 5 s apart: totals from the latest; rps, error ratio and p99 from what happened between."""
    board = StatsBoard()
    board.ingest("g1", report([["r", "s/a", row(10, 0, {0.01: 10})]]), now=100.0)
    board.ingest("g1", report([["r", "s/a", row(20, 5, {0.01: 15, 0.5: 10})]]), now=105.0)
    snap = board.snapshot(105.5)
    assert snap["time"] == 105.5 and snap["window"] == 10.0
    assert snap["gateways"] == [{"id": "g1", "reported_at": 105.0, "connections": 3, "workers": 1}]
    r = snap["routes"]["r"]
    assert (r["requests"], r["errors"]) == (25, 5)
    assert r["status"] == {"2xx": 20, "3xx": 0, "4xx": 0, "5xx": 5}
    assert r["rps"] == 3.0  # 15 requests in 5 s
    assert r["error_ratio"] == pytest.approx(5 / 15, abs=1e-4)
    # window buckets: 5 at ≤10 ms, 10 in (250 ms, 500 ms]; p50 rank 7.5 → 250 + 250 × 2.5/10 ms
    assert r["p50_ms"] == pytest.approx(312.5)
    assert r["p99_ms"] == pytest.approx(250 + 250 * (14.85 - 5) / 10)
    assert snap["services"]["s"] == r and snap["instances"]["s/a"] == r


def test_a_first_report_is_compared_with_zero_at_the_gateway_start() -> None:
    """With one report, the window starts at the gateway's started_at when that is within the window."""
    board = StatsBoard()
    board.ingest("g1", report([["r", "s/a", row(8, 0, {0.001: 8})]], started_at=98.0), now=100.0)
    r = board.snapshot(100.0)["routes"]["r"]
    assert r["rps"] == 4.0 and r["p50_ms"] == pytest.approx(0.5)


def test_a_restarted_gateway_counts_from_zero_again() -> None:
    """When started_at changes the older reports are not subtracted (the counters began again)."""
    board = StatsBoard()
    board.ingest("g1", report([["r", "s/a", row(100)]], started_at=10.0), now=100.0)
    board.ingest("g1", report([["r", "s/a", row(6)]], started_at=101.0), now=104.0)
    r = board.snapshot(104.0)["routes"]["r"]
    assert r["requests"] == 6 and r["rps"] == 2.0


def test_reports_older_than_the_window_give_no_rate() -> None:
    """Traffic that ended more than `window` seconds ago has rate 0 and no quantiles, but still counts."""
    board = StatsBoard(window=10.0)
    board.ingest("g1", report([["r", "s/a", row(5, 0, {0.01: 5})]], started_at=0.0), now=100.0)
    board.ingest("g1", report([["r", "s/a", row(5, 0, {0.01: 5})]], started_at=0.0), now=112.0)
    r = board.snapshot(112.0)["routes"]["r"]
    assert (r["requests"], r["rps"], r["p50_ms"], r["p99_ms"], r["error_ratio"]) == (5, 0.0, None, None, 0.0)


def test_gateways_are_summed_and_stale_ones_dropped() -> None:
    """Two live gateways add up; one silent for more than 15 s leaves the snapshot."""
    board = StatsBoard()
    board.ingest("g1", report([["r", "s/a", row(4)]], started_at=99.0), now=100.0)
    board.ingest("g2", report([["r", "s/b", row(6)]], started_at=99.0), now=100.0)
    snap = board.snapshot(101.0)
    assert snap["routes"]["r"]["requests"] == 10 and snap["routes"]["r"]["rps"] == 10.0
    assert set(snap["instances"]) == {"s/a", "s/b"} and snap["services"]["s"]["requests"] == 10
    board.ingest("g2", report([["r", "s/b", row(7)]], started_at=99.0), now=110.0)
    later = board.snapshot(115.5)
    assert [g["id"] for g in later["gateways"]] == ["g2"] and later["routes"]["r"]["requests"] == 7


def test_policies_are_merged_over_gateways() -> None:
    """Per-route policy state: counts summed, the most alarming breaker state, ejected instances united."""
    board = StatsBoard()
    p1 = {"breaker": "closed", "rate_limited": 2, "shed": 1, "retries": 3, "ejected": ["s/a"], "hedges_sent": 4}
    p2 = {"breaker": "half_open", "rate_limited": 1, "shed": 0, "retries": 0, "ejected": [], "hedges_won": 2}
    board.ingest("g1", report([], policies={"r": p1}), now=100.0)
    board.ingest("g2", report([], policies={"r": p2}), now=100.0)
    assert board.snapshot(100.0)["policies"] == {
        "r": {"breaker": "half_open", "rate_limited": 3, "shed": 1, "retries": 3, "ejected": ["s/a"],
              "hedges_sent": 4, "hedges_won": 2}
    }  # fmt: skip


def test_requests_without_route_or_instance_stay_out_of_the_maps() -> None:
    """Unrouted requests (route "") and refusals before a pick (instance "") are in no route/instance row."""
    board = StatsBoard()
    board.ingest("g1", report([["", "", row(0, 0)], ["r", "", row(0, 2)]]), now=100.0)
    snap = board.snapshot(100.0)
    assert list(snap["routes"]) == ["r"] and snap["instances"] == {} and snap["services"] == {}


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    """Linear inside the bucket; the +Inf bucket answers the highest finite bound; empty is None."""
    buckets = [0] * (len(BOUNDS) + 1)
    assert quantile(0.5, buckets) is None
    buckets[0] = 10  # all ≤ 1 ms
    assert quantile(0.5, buckets) == pytest.approx(0.0005)
    buckets[-1] = 10  # and 10 beyond 10 s
    assert quantile(0.99, buckets) == BOUNDS[-1]
