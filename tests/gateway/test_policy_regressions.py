"""Regressions of the route policy chain: every request gets an answer, whatever the timing (bulkhead waiters
dropped on the way, route changes while requests wait, pipelined refusals, failures after a wait)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route
from pydantic import ValidationError

from jishi.core.resilience import Admission, Bulkhead
from jishi.gateway import dispatch, policy
from jishi.gateway.exchange import Exchange
from jishi.gateway.policy_build import compile_route
from jishi.gateway.policy_chain import RoutePolicy
from jishi.gateway.policy_queue import WaitQueue
from jishi.registry.model import Health, Instance, Route, RouteBackend
from jishi.registry.policies import (
    AccessLogSpec,
    AdaptiveConcurrency,
    BreakerPolicy,
    BulkheadPolicy,
    LoadBalancing,
    RateLimit,
    Rewrite,
)


@pytest.fixture
async def gw(gateway: GatewayUnderTest) -> AsyncIterator[GatewayUnderTest]:
    """The in-process gateway whose route policies are closed at the end."""
    yield gateway
    await policy.close(gateway.proxy.table)


def _queue_with_one_waiter() -> tuple[WaitQueue, Bulkhead, list[Any], list[Any], float, Any]:
    loop = asyncio.get_running_loop()
    resumed: list[Any] = []
    expired: list[Any] = []
    b = Bulkhead(1, 1, 0.1, keep_dropped=True)
    q = WaitQueue(b, loop, lambda c, e, s: resumed.append(e), lambda c, e: expired.append(e))
    t0 = loop.time()
    assert b.enter(t0)[0] is Admission.RUN
    admission, ticket = b.enter(t0)
    assert admission is Admission.WAIT
    ex = SimpleNamespace(finished=False, held=0, ticket=0)
    q.wait(ticket, SimpleNamespace(closed=False), ex, 1)  # type: ignore[arg-type]
    return q, b, resumed, expired, t0, ex


async def test_waiter_dropped_by_leave_before_its_timer_is_refused() -> None:
    """A slot freed just after a waiter's deadline (before the timer ran) answers that waiter: it expires."""
    q, b, resumed, expired, t0, ex = _queue_with_one_waiter()
    q.leave(t0 + 0.1005)
    await asyncio.sleep(0.3)
    assert expired == [ex] and resumed == []
    assert not q._waiters and b.active == 0


async def test_waiter_dropped_by_enter_before_its_timer_is_refused() -> None:
    """A new request arriving just after a waiter's deadline (before the timer ran) leaves it answered."""
    q, b, resumed, expired, t0, ex = _queue_with_one_waiter()
    b.enter(t0 + 0.1005)
    q.reap()  # as the chain's bulkhead stage does after enter()
    await asyncio.sleep(0.3)
    assert expired[:1] == [ex] and resumed == []


async def _one(port: int, path: bytes) -> int | str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3.0)
        return int(head.split(b" ")[1])
    except TimeoutError:
        return "hung"
    finally:
        writer.close()


async def test_bulkhead_under_load_answers_every_request(gw: GatewayUnderTest, backends) -> None:
    """30 clients × 15 requests through a 2-slot bulkhead with a 50 ms queue: each gets 200 or 503, none hangs."""
    (b,) = backends(1)
    gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=2, max_queue=200, max_wait=0.05))], [b.instance()])
    results: list[int | str] = []

    async def worker() -> None:
        for _ in range(15):
            results.append(await _one(gw.port, b"/sleep?s=0.02"))

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(30))), 90)
    assert results.count("hung") == 0
    assert set(results) <= {200, 503}
    pol = gw.proxy.table.routes["svc"].policy
    assert pol is not None and pol._queue is not None
    assert not pol._queue._waiters and pol.c.bulkhead is not None and pol.c.bulkhead.active == 0


async def test_route_change_refuses_bulkhead_waiters_at_once(gw: GatewayUnderTest, backends) -> None:
    """A request waiting in the bulkhead when its route changes gets 503 right away, not after the slow call."""
    (b,) = backends(1)
    gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=1, max_queue=1, max_wait=0.3))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        first = asyncio.create_task(client.get("/sleep?s=2"))
        await asyncio.sleep(0.2)
        queued = asyncio.create_task(client.get("/whoami"))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=1, max_queue=2, max_wait=0.3))], [b.instance()])
        r = await queued
        waited = time.monotonic() - t0
        assert (await first).status_code == 200
    assert r.status_code == 503 and r.json()["error"]["code"] == "bulkhead_full"
    assert waited < 1.0


async def _read_statuses(reader: asyncio.StreamReader, n: int) -> list[int]:
    got: list[int] = []
    while len(got) < n:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        got.append(int(head.split(b" ")[1]))
    return got


@pytest.mark.parametrize("limited", [True, False], ids=["rate-limited", "no-route"])
async def test_400_pipelined_refusals_all_answered(gw: GatewayUnderTest, backends, limited: bool) -> None:
    """400 requests pipelined behind a slow one, each refused at once (429 or 404), all get their answer in order."""
    (b,) = backends(1)
    if limited:
        gw.set([simple_route(rate_limit=RateLimit(requests=1, period=60, key="route"))], [b.instance()])
        first, rest, status = b"/sleep?s=0.3", b"/whoami", 429
    else:
        gw.set([simple_route(prefix="/ok")], [b.instance()])
        first, rest, status = b"/ok/sleep?s=0.3", b"/nope", 404
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        n = 400
        writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % first + b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % rest * n)
        got = await _read_statuses(reader, n + 1)
    finally:
        writer.close()
    assert got == [200] + [status] * n


@pytest.fixture
def boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dispatch.proceed` fails for paths under /boom, as a bug of the gateway's would."""
    real = dispatch.proceed

    def proceed(client: Any, ex: Any, now: float) -> None:
        if ex.url.startswith(b"/boom"):
            raise RuntimeError("a bug")
        real(client, ex, now)

    monkeypatch.setattr(dispatch, "proceed", proceed)


@pytest.mark.usefixtures("boom")
async def test_failure_after_a_bulkhead_wait_is_answered_500(gw: GatewayUnderTest, backends, caplog) -> None:
    """A request that fails once its bulkhead slot comes is answered 500 internal_error, and frees its slot."""
    (b,) = backends(1)
    gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=1, max_queue=1, max_wait=5))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url, timeout=5) as client:
        first = asyncio.create_task(client.get("/sleep?s=0.3"))
        await asyncio.sleep(0.1)
        r = await client.get("/boom")
        assert (await first).status_code == 200
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert (await client.get("/whoami")).status_code == 200
    pol = gw.proxy.table.routes["svc"].policy
    assert pol is not None and pol.c.bulkhead is not None and pol.c.bulkhead.active == 0
    assert any(rec.exc_info and "route 'svc'" in rec.getMessage() for rec in caplog.records)


@pytest.mark.usefixtures("boom")
async def test_failure_starting_a_pipelined_request_is_answered_500(gw: GatewayUnderTest, backends) -> None:
    """A pipelined request whose start fails (called from the previous one's finish) is answered 500."""
    (b,) = backends(1)
    gw.set([simple_route()], [b.instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"GET /sleep?s=0.2 HTTP/1.1\r\nHost: x\r\n\r\nGET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        writer.write(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await _read_statuses(reader, 3) == [200, 500, 200]
    finally:
        writer.close()


def test_rewrite_replacement_is_checked_when_loaded() -> None:
    """A replacement naming a missing group, or a regex that only compiles as text, is refused at config time."""
    with pytest.raises(ValidationError, match="not a valid replacement"):
        Rewrite(path="/v2/\\2", path_regex="^/(.*)")
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        Rewrite(path="/b", path_regex="(?u)^/a")
    assert Rewrite(path="/v2/\\1", path_regex="^/(.*)").path == "/v2/\\1"


async def test_route_whose_policy_cannot_be_built_is_refused(gw: GatewayUnderTest, backends, caplog) -> None:
    """A section that fails to build (here a concurrency limit out of order) refuses the route with 503
    policy_error and logs an ERROR naming route and section, instead of serving the route without its limits."""
    (b,) = backends(1)
    bad = AdaptiveConcurrency.model_construct(algorithm="aimd", initial_limit=50, min_limit=1, max_limit=10)
    route = simple_route(rate_limit=RateLimit(requests=100, period=1, key="route")).model_copy(
        update={"concurrency": bad}
    )
    gw.set([route], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        r = await client.get("/whoami")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "policy_error" and "concurrency" in r.json()["error"]["message"]
    errors = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
    assert any("route svc" in m and "concurrency" in m for m in errors)


async def test_route_change_while_redis_decides_answers_the_request(gw: GatewayUnderTest, backends) -> None:
    """A request whose Redis decision is pending when its route changes is still answered (admitted), long before
    its 3 s Redis timeout."""
    (b,) = backends(1)
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # a "Redis" that accepts and never answers
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rl = RateLimit(requests=100, period=1, key="route", redis=f"redis://127.0.0.1:{port}/0", redis_timeout=3)
    try:
        gw.set([simple_route(rate_limit=rl)], [b.instance()])
        async with httpx.AsyncClient(base_url=gw.url, timeout=8) as client:
            req = asyncio.create_task(client.get("/whoami"))
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            gw.set([simple_route(rate_limit=rl.model_copy(update={"requests": 200}))], [b.instance()])
            r = await req
            assert r.status_code == 200
            assert time.monotonic() - t0 < 2.0
    finally:
        for w in writers:
            w.close()
        server.close()


async def test_rate_limit_keyed_by_forwarded_for_and_host(gw: GatewayUnderTest, backends) -> None:
    """A limit of 1 per X-Forwarded-For (or per Host) value counts each value on its own, not all as "-"."""
    (b,) = backends(1)
    for key, header in (("header:X-Forwarded-For", "X-Forwarded-For"), ("header:Host", "Host")):
        gw.set([simple_route(rate_limit=RateLimit(requests=1, period=60, key=key))], [b.instance()])
        async with httpx.AsyncClient(base_url=gw.url) as client:
            first = [(await client.get("/whoami", headers={header: f"10.0.0.{i}"})).status_code for i in range(4)]
            again = (await client.get("/whoami", headers={header: "10.0.0.1"})).status_code
        assert (first, again) == ([200] * 4, 429), key
        await policy.close(gw.proxy.table)


async def test_hash_on_forwarded_for_spreads_clients(gw: GatewayUnderTest, backends) -> None:
    """ring_hash on header:X-Forwarded-For keeps each forwarded client on one instance and spreads them."""
    bs = backends(3)
    route = Route.model_validate(
        {
            "name": "svc",
            "backends": [{"service": "svc"}],
            "lb": {"policy": "ring_hash", "hash_on": "header:X-Forwarded-For"},
        }
    )
    gw.set([route], [x.instance() for x in bs])
    owners: dict[int, set[str]] = {}
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for user in range(12):
            for _ in range(3):
                r = await client.get("/whoami", headers={"X-Forwarded-For": f"10.1.0.{user}"})
                owners.setdefault(user, set()).add(r.json()["name"])
    assert all(len(names) == 1 for names in owners.values()), owners
    assert len(set().union(*owners.values())) >= 2


@pytest.mark.parametrize("name", ["Connection", "upgrade", "X-Real-IP", "X-Forwarded-Proto", "Transfer-Encoding"])
def test_keys_of_headers_the_gateway_manages_are_refused(name: str) -> None:
    """A rate-limit key or hash_on naming a header the gateway drops or sets itself is refused, saying why."""
    with pytest.raises(ValidationError, match="cannot be a request key"):
        RateLimit(requests=1, key=f"header:{name}")
    with pytest.raises(ValidationError, match="cannot be a request key"):
        LoadBalancing(policy="ring_hash", hash_on=f"header:{name}")


async def test_breaker_reopen_cycles_are_published() -> None:
    """Each failed probe cycle (open → half-open → open) publishes both changes, though the state ends as it began."""
    loop = asyncio.get_running_loop()
    breaker = BreakerPolicy(window_size=2, minimum_calls=2, wait_in_open=0.05, permitted_calls_in_half_open=1)
    spec = Route(name="r", prefix="/", backends=[RouteBackend(service="s")], breaker=breaker)
    proxy: Any = SimpleNamespace(loop=loop, events=deque())
    p = RoutePolicy(compile_route(spec), proxy)
    client: Any = SimpleNamespace(client_ip=b"1", closed=False)

    def call(status: int) -> None:
        ex = Exchange(loop.time(), b"/")
        assert p._breaker(client, ex, loop.time(), 0)
        ex.status = status
        p.done(client, ex, loop.time())

    call(503)
    call(503)  # closed → open
    for _ in range(3):
        await asyncio.sleep(0.06)
        call(503)  # open → half-open (the probe's permit) → open (it failed)
    p.state()
    moves = [(e.labels["from"], e.labels["to"]) for e in proxy.events]
    assert moves == [("closed", "open")] + [("open", "half_open"), ("half_open", "open")] * 3


async def test_refused_upgrade_request_closes_the_connection(gw: GatewayUnderTest, backends) -> None:
    """An upgrade request the policy refuses (429) is answered with Connection: close and the connection ends,
    since nothing after its head is read."""
    (b,) = backends(1)
    gw.set([simple_route(rate_limit=RateLimit(requests=1, period=60, key="route"))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/whoami")).status_code == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 429") and b"connection: close" in head.lower()
        n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(n)
        assert await asyncio.wait_for(reader.read(100), 3) == b""  # closed, not left hanging
    finally:
        writer.close()


async def test_unroutable_upgrade_request_closes_the_connection(gw: GatewayUnderTest, backends) -> None:
    """An upgrade request answered with an error by the gateway (404) also ends its connection."""
    (b,) = backends(1)
    gw.set([simple_route(prefix="/ok")], [b.instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 404") and b"connection: close" in head.lower()
        n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(n)
        assert await asyncio.wait_for(reader.read(100), 3) == b""
    finally:
        writer.close()


async def test_adaptive_concurrency_sample_runs_from_admission() -> None:
    """The latency the adaptive limit learns from starts when the request is admitted, not when its head began
    arriving (a slow client's upload is no slow instance)."""
    loop = asyncio.get_running_loop()
    spec = Route(name="r", prefix="/", backends=[RouteBackend(service="s")], concurrency=AdaptiveConcurrency())
    p = RoutePolicy(compile_route(spec), SimpleNamespace(loop=loop, events=deque()))  # type: ignore[arg-type]
    real = p.c.limiter
    assert real is not None
    samples: list[float] = []

    class Recorder:
        limit = real.limit
        try_acquire = real.try_acquire

        def release(self, inflight: int, rtt: float, dropped: bool = False) -> int:
            samples.append(rtt)
            return real.release(inflight, rtt, dropped)

    p.c.limiter = Recorder()  # type: ignore[assignment]
    client: Any = SimpleNamespace(client_ip=b"1", closed=False)
    now = loop.time()
    ex = Exchange(now - 10.0, b"/")  # its head began arriving 10 s ago
    assert p._concurrency(client, ex, now, 0)
    ex.status = 200
    p.done(client, ex, now + 0.05)
    assert samples == [pytest.approx(0.05)]


async def test_responses_broken_off_count_as_breaker_failures(gw: GatewayUnderTest) -> None:
    """An instance that breaks off its 200 response mid-body is a failure for the breaker: two such trip it."""

    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(broken, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        breaker = BreakerPolicy(window_size=2, minimum_calls=2, failure_rate=50, wait_in_open=30)
        gw.set([simple_route(breaker=breaker)], [Instance(id="b-0", service="svc", port=port, health=Health.PASSING)])
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(reader.read(), 3)  # the broken response, then the close
            writer.close()
        async with httpx.AsyncClient(base_url=gw.url) as client:
            r = await client.get("/x")
        assert r.status_code == 503 and r.json()["error"]["code"] == "circuit_open"
    finally:
        server.close()


async def test_route_log_keeps_lines_of_requests_ending_after_a_route_change(
    gw: GatewayUnderTest, backends, tmp_path: Path
) -> None:
    """A request admitted before its route changed, ending after, still gets its line in the old route log."""
    (b,) = backends(1)
    old_log, new_log = tmp_path / "old.log", tmp_path / "new.log"
    gw.set([simple_route(access_log=AccessLogSpec(path=str(old_log)))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url, timeout=5) as client:
        slow = asyncio.create_task(client.get("/sleep?s=0.6"))
        await asyncio.sleep(0.2)
        gw.set([simple_route(access_log=AccessLogSpec(path=str(new_log)))], [b.instance()])
        assert (await slow).status_code == 200
        assert (await client.get("/whoami")).status_code == 200
    await policy.close(gw.proxy.table)  # (also awaits the old policy's close)
    old = [json.loads(line)["path"] for line in old_log.read_text().splitlines()]
    new = [json.loads(line)["path"] for line in new_log.read_text().splitlines()]
    assert (old, new) == (["/sleep?s=0.6"], ["/whoami"])
