"""Gateway request metrics: known traffic through a real proxy, then exact counts and buckets at /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.gateway.admin import AdminServer, render
from jishi.gateway.exchange import Exchange
from jishi.gateway.reporter import LocalMetrics, Reporter
from jishi.gateway.stats import B0, BOUNDS, RETRIES, SUM, Stats, merge
from jishi.registry.model import Health, Instance
from jishi.testing import metric_samples


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A backend that answers GET /code/NNN with that status, after `?sleep=S` seconds if given."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            path, _, query = target.partition("?")
            status = int(path.rsplit("/", 1)[-1]) if "/code/" in path else 200
            if query.startswith("sleep="):
                await asyncio.sleep(float(query[6:]))
            body = b'{"ok": true}'
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def backend_port() -> AsyncIterator[int]:
    """An in-process backend on an ephemeral port (see `_answer`)."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def send_known_traffic(base_url: str, prefix: str = "") -> None:
    """7 × 200 and 3 × 500, of which one 500 takes 0.3 s; each on its own connection."""
    for path in [f"{prefix}/code/200"] * 7 + [f"{prefix}/code/500"] * 2 + [f"{prefix}/code/500?sleep=0.3"]:
        async with httpx.AsyncClient(base_url=base_url) as client:
            await client.get(path)


def check_known_traffic(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], instance: str) -> None:
    """The exact counts and buckets `send_known_traffic` must leave (route "svc", service "svc")."""
    labels = (("instance", instance), ("route", "svc"), ("service", "svc"))
    assert found[("jishi_gateway_requests_total", (("code_class", "2xx"), *labels))] == 7
    assert found[("jishi_gateway_requests_total", (("code_class", "5xx"), *labels))] == 3
    for name, key in (("jishi_gateway_request_duration_seconds", "route"),
                      ("jishi_gateway_service_request_duration_seconds", "service")):  # fmt: skip
        bucket = {
            le: found[(f"{name}_bucket", tuple(sorted(((key, "svc"), ("le", le)))))]
            for le in ("0.1", "0.25", "0.5", "+Inf")
        }
        assert bucket == {"0.1": 9, "0.25": 9, "0.5": 10, "+Inf": 10}  # the slow one lands in (0.25, 0.5]
        assert found[(f"{name}_count", ((key, "svc"),))] == 10
        assert 0.3 <= found[(f"{name}_sum", ((key, "svc"),))] < 0.3 + 9 * 0.1


async def test_scrape_after_known_traffic_has_exact_counts_and_buckets(
    gateway: GatewayUnderTest, backend_port: int
) -> None:
    """7×200 and 3×500 (one slow) through the proxy: /metrics has the exact class counts and histogram buckets."""
    gateway.proxy.stats = Stats()
    gateway.set([simple_route("svc")], [Instance(id="a", service="svc", port=backend_port, health=Health.PASSING)])
    admin = AdminServer(LocalMetrics(gateway.proxy).current)
    admin_port = await admin.start("127.0.0.1", 0)
    try:
        await send_known_traffic(gateway.url)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as client:
            reply = await client.get("/metrics")
            health = await client.get("/healthz")
            missing = await client.get("/nope")
    finally:
        await admin.stop()
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = metric_samples(reply.text)
    check_known_traffic(found, "svc/a")
    assert found[("jishi_gateway_retries_total", (("route", "svc"),))] == 0
    assert found[("jishi_gateway_upstream_idle_connections", ())] >= 1  # the backend keeps connections alive
    assert health.json() == {"status": "ok"}
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_unrouted_requests_are_counted_without_route_or_instance(gateway: GatewayUnderTest) -> None:
    """A request no route matches is a 404 counted under route "" and instance ""."""
    gateway.proxy.stats = Stats()
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.get("/nowhere")).status_code == 404
    found = metric_samples(render(LocalMetrics(gateway.proxy).current).decode())
    key = (("code_class", "4xx"), ("instance", ""), ("route", ""), ("service", ""))
    assert found[("jishi_gateway_requests_total", key)] == 1


class _Route:
    def __init__(self, name: str) -> None:
        self.name = name


class _Peer:
    def __init__(self, key: str) -> None:
        self.key = key


def _exchange(route: str, peer: str | None, status: int, t0: float, tries: int = 1) -> Exchange:
    ex = Exchange(t0, b"/")
    ex.route = _Route(route)  # type: ignore[assignment]
    ex.peer = _Peer(peer) if peer else None  # type: ignore[assignment]
    ex.status = status
    ex.tries = tries
    return ex


def test_record_puts_latency_in_the_bucket_whose_bound_is_the_first_not_below_it() -> None:
    """le semantics: exactly 1 ms counts in the 1 ms bucket, just above it in the next; 20 s only in +Inf."""
    stats = Stats()
    for elapsed in (0.001, 0.0011, 20.0):
        stats.record(_exchange("r", "s/a", 200, 0.0), elapsed)
    row = stats.rows[("r", "s/a")]
    assert row[B0] == 1 and row[B0 + 1] == 1 and row[B0 + len(BOUNDS)] == 1
    assert row[2] == 3 and row[SUM] == pytest.approx(20.0021)


def test_record_counts_retries_and_status_classes_per_route_and_instance() -> None:
    """Tries after the first are retries; rows are kept per (route, instance); 499 counts as 4xx."""
    stats = Stats()
    stats.record(_exchange("r", "s/a", 200, 0.0, tries=3), 0.01)
    stats.record(_exchange("r", "s/b", 499, 0.0), 0.01)
    stats.record(_exchange("r", None, 503, 0.0), 0.01)
    assert stats.rows[("r", "s/a")][RETRIES] == 2
    assert stats.rows[("r", "s/b")][4] == 1
    assert stats.rows[("r", "")][5] == 1


def test_merge_adds_rows_gauges_and_policies() -> None:
    """Two workers' reports sum: rows per key, gauges, rejection counts; the most alarming breaker state wins."""

    def worker(n: int, breaker: str, ejected: list[str]) -> dict[str, Any]:
        row = [0] * (RETRIES + 1)
        row[2] = n
        policy = {"breaker": breaker, "rate_limited": n, "shed": 0, "retries": 1, "ejected": ejected,
                  "hedges_sent": n, "hedges_won": 1}  # fmt: skip
        return {"started_at": float(n), "workers": 1, "connections": n, "upstream": {"idle": 1, "busy": 0},
                "rows": [["r", "s/a", row]], "policies": {"r": policy}, "events": []}  # fmt: skip

    total = merge([worker(2, "closed", ["s/a"]), worker(5, "open", ["s/b"])])
    assert total["workers"] == 2 and total["connections"] == 7 and total["started_at"] == 2.0
    assert total["rows"][0][2][2] == 7
    assert total["policies"]["r"] == {
        "breaker": "open",
        "rate_limited": 7,
        "shed": 0,
        "retries": 2,
        "ejected": ["s/a", "s/b"],
        "hedges_sent": 7,
        "hedges_won": 2,
    }


async def test_breaker_state_and_rate_limit_rejections_reach_metrics(
    gateway: GatewayUnderTest, backend_port: int
) -> None:
    """A route whose breaker opened and whose limit refused requests: breaker_state{state="open"} is 1 and
    rate_limited_total counts the 429s."""
    from jishi.registry.policies import BreakerPolicy, RateLimit

    gateway.proxy.stats = Stats()
    route = simple_route(
        "svc",
        breaker=BreakerPolicy(window_size=4, minimum_calls=4, failure_rate=50.0, wait_in_open=60.0),
        rate_limit=RateLimit(requests=6, period=60.0, key="route"),
    )
    gateway.set([route], [Instance(id="a", service="svc", port=backend_port, health=Health.PASSING)])
    statuses = []
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for _ in range(8):
            statuses.append((await client.get("/code/500")).status_code)
    assert statuses.count(429) == 2  # 6 admitted by the limit: 4 reach the instance, then the breaker is open
    found = metric_samples(render(LocalMetrics(gateway.proxy).current).decode())
    assert found[("jishi_gateway_rate_limited_total", (("route", "svc"),))] == 2
    assert found[("jishi_gateway_breaker_state", (("route", "svc"), ("state", "open")))] == 1
    assert found[("jishi_gateway_breaker_state", (("route", "svc"), ("state", "closed")))] == 0
    labels = (("code_class", "5xx"), ("instance", "svc/a"), ("route", "svc"), ("service", "svc"))
    assert found[("jishi_gateway_requests_total", labels)] == 4


async def test_breaker_events_reach_the_event_log_through_the_report(
    gateway: GatewayUnderTest, backend_port: int, tmp_path: Path
) -> None:
    """The gateway's own events (a breaker opening) travel in the next report into the control plane's event
    log, and its traffic into the control plane's stats."""
    from jishi.registry import Registry
    from jishi.registry.policies import BreakerPolicy
    from jishi.server.stats import StatsBoard
    from jishi.store.sqlite import SqliteStore

    gateway.proxy.stats = Stats()
    route = simple_route("svc", breaker=BreakerPolicy(window_size=4, minimum_calls=4, wait_in_open=60.0))
    gateway.set([route], [Instance(id="a", service="svc", port=backend_port, health=Health.PASSING)])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for _ in range(5):
            await client.get("/code/500")
    store = await SqliteStore.open(tmp_path / "state.db")
    try:
        registry = Registry(store)
        board = StatsBoard()
        registry.report_sink = lambda gateway_id, data: board.ingest(gateway_id, data, 100.0)
        assert await Reporter(registry, "gw", LocalMetrics(gateway.proxy)).push()
        events = await registry.events(kind="route.breaker")
    finally:
        await store.close()
    assert [(e.subject, e.labels["to"]) for e in events] == [("svc", "open")]
    stats = board.snapshot(100.0)
    assert stats["routes"]["svc"]["status"]["5xx"] == 5 and stats["policies"]["svc"]["breaker"] == "open"
