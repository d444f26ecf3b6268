"""What the route policy chain learns from each exchange's outcome: breaker state changes published, failures
counted, the adaptive concurrency limit's latency samples."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.gateway import policy
from jishi.gateway.exchange import Exchange
from jishi.gateway.policy_build import compile_route
from jishi.gateway.policy_chain import RoutePolicy
from jishi.registry.model import Health, Instance, Route, RouteBackend
from jishi.registry.policies import AdaptiveConcurrency, BreakerPolicy


@pytest.fixture
async def gw(gateway: GatewayUnderTest) -> AsyncIterator[GatewayUnderTest]:
    """The in-process gateway whose route policies are closed at the end."""
    yield gateway
    await policy.close(gateway.proxy.table)


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
