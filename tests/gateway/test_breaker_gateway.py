"""The circuit breaker in the gateway against a real backend that fails half of its requests, then heals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.gateway import policy
from jishi.registry.model import Health, Instance
from jishi.registry.policies import BreakerPolicy, Fallback
from jishi.testing import free_port


class FlakyBackend:
    """An HTTP/1.1 instance on 127.0.0.1 answering 500 to every other request while `failing`, else 200."""

    def __init__(self) -> None:
        self.failing = True
        self.served = 0
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.served += 1
                if self.failing and self.served % 2 == 0:
                    writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def instance(self) -> Instance:
        return Instance(id="flaky", service="svc", port=self.port, health=Health.PASSING)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def flaky() -> AsyncIterator[FlakyBackend]:
    backend = FlakyBackend()
    await backend.start()
    yield backend
    await backend.stop()


BREAKER = BreakerPolicy(
    window="count", window_size=10, minimum_calls=10, failure_rate=50, wait_in_open=0.4, permitted_calls_in_half_open=2
)


async def test_breaker_opens_on_half_failures_and_recovers_through_half_open(
    gateway: GatewayUnderTest, flaky: FlakyBackend
) -> None:
    """10 calls with 5 500s open it (the 11th is 503 circuit_open, Retry-After 1, without reaching the backend);
    after wait_in_open two probes to the healed backend close it; each change is an event."""
    gateway.set([simple_route(breaker=BREAKER)], [flaky.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        statuses = [(await client.get("/x")).status_code for _ in range(10)]
        opened_at = time.monotonic()
        assert statuses == [200, 500] * 5
        served = flaky.served
        refused = await client.get("/x")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert (error["code"], error["state"]) == ("circuit_open", "open")
        assert 0.3 < error["retry_after"] <= 0.4
        assert flaky.served == served  # refused in the gateway

        flaky.failing = False
        await asyncio.sleep(0.4 - (time.monotonic() - opened_at) + 0.05)
        probes = [(await client.get("/x")).status_code for _ in range(2)]
        assert probes == [200, 200]
        assert gateway.proxy.table.routes["svc"].policy.state()["breaker"] == "closed"
        assert [(await client.get("/x")).status_code for _ in range(5)] == [200] * 5
    events = [e for e in gateway.proxy.events if e.kind == "route.breaker"]
    assert [(e.labels["from"], e.labels["to"]) for e in events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert events[0].subject == "svc" and events[0].level == "warning"
    assert "failure rate 50.0%" in events[0].reason


async def test_failed_probes_open_it_again(gateway: GatewayUnderTest, flaky: FlakyBackend) -> None:
    """Probes that still fail send the breaker back to open, and requests are refused again."""
    gateway.set([simple_route(breaker=BREAKER)], [flaky.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for _ in range(10):
            await client.get("/x")
        await asyncio.sleep(0.45)
        probes = [(await client.get("/x")).status_code for _ in range(2)]
        after = await client.get("/x")
    assert sorted(probes) == [200, 500]
    assert after.status_code == 503 and after.json()["error"]["state"] == "open"
    assert gateway.proxy.table.routes["svc"].policy.state()["breaker"] == "open"


async def test_open_breaker_answers_with_the_fallback(gateway: GatewayUnderTest, flaky: FlakyBackend) -> None:
    """With a fallback for breaker_open, an open breaker answers with the degraded response instead of 503."""
    route = simple_route(breaker=BREAKER, fallback=Fallback(status=200, body="cached", content_type="text/plain"))
    gateway.set([route], [flaky.instance()])
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            for _ in range(10):
                await client.get("/x")
            r = await client.get("/x")
        assert (r.status_code, r.text, r.headers["x-jishi-fallback"]) == (200, "cached", "breaker_open")
    finally:
        await policy.close(gateway.proxy.table)


async def test_slow_calls_open_the_breaker(gateway: GatewayUnderTest, backends) -> None:
    """Calls slower than slow_call_duration count as slow; all slow → open, though every status was 200."""
    (b,) = backends(1)
    slow = BreakerPolicy(window_size=3, minimum_calls=3, slow_call_rate=100, slow_call_duration=0.1, wait_in_open=5)
    gateway.set([simple_route(breaker=slow)], [b.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        statuses = [(await client.get("/sleep?s=0.15")).status_code for _ in range(3)]
        refused = await client.get("/whoami")
    assert statuses == [200] * 3
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert "slow-call rate" in gateway.proxy.events[-1].reason


async def test_an_error_replaced_by_the_fallback_still_counts_for_the_breaker(gateway: GatewayUnderTest) -> None:
    """An instance refusing connections: each request gets the fallback (200), yet each is a failure for the
    breaker, which opens after minimum_calls."""
    dead = Instance(id="dead", service="svc", port=free_port(), health=Health.PASSING)
    breaker = BreakerPolicy(window_size=3, minimum_calls=3, failure_rate=50, wait_in_open=30)
    fallback = Fallback(status=200, body="degraded", content_type="text/plain")
    gateway.set([simple_route(breaker=breaker, fallback=fallback, retries=0)], [dead])
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            answers = [await client.get("/x") for _ in range(4)]
    finally:
        await policy.close(gateway.proxy.table)
    assert [(r.status_code, r.text) for r in answers] == [(200, "degraded")] * 4
    assert [r.headers["x-jishi-fallback"] for r in answers][-1] == "breaker_open"
    assert gateway.proxy.table.routes["svc"].policy.state()["breaker"] == "open"
