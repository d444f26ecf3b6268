"""Requests the route policy chain holds (in a bulkhead's queue, waiting for a Redis decision) are answered
whatever happens while they wait: deadlines passing between timers, load, route changes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.core.resilience import Admission, Bulkhead
from jishi.gateway import policy
from jishi.gateway.policy_queue import WaitQueue
from jishi.registry.policies import AccessLogSpec, BulkheadPolicy, RateLimit


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
    admission, ticket = b.enter(t0 + 0.1005)
    q.reap()  # as the chain's bulkhead stage does after enter()
    assert admission is Admission.WAIT  # the newcomer waits in turn (the slot is still taken), as the stage has it
    late = SimpleNamespace(finished=False, held=0, ticket=0)
    q.wait(ticket, SimpleNamespace(closed=False), late, 1)  # type: ignore[arg-type]
    await asyncio.sleep(0.3)
    assert expired == [ex, late] and resumed == []
    assert not q._waiters


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
