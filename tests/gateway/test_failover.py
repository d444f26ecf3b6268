"""Failure handling: retries on another instance, 502/503/504/400 JSON errors, and serving on after them."""

from __future__ import annotations

import asyncio
import signal

import httpx
from gateway_harness import GatewayUnderTest, simple_route

from jishi.registry.model import Route, RouteBackend
from jishi.testing import free_port


async def test_kill_9_of_one_instance_under_load_fails_no_request(gateway: GatewayUnderTest, backends) -> None:
    """A few hundred concurrent GETs see zero errors while one of three instances is killed with SIGKILL."""
    bs = backends(3)
    gateway.set([simple_route()], [b.instance() for b in bs])
    results: list[int | str] = []
    seen: set[str] = set()

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        for _ in range(n):
            try:
                r = await client.get("/whoami")
                results.append(r.status_code)
                seen.add(r.json()["name"])
            except httpx.HTTPError as exc:
                results.append(repr(exc))
            await asyncio.sleep(0.005)

    async with httpx.AsyncClient(base_url=gateway.url, limits=httpx.Limits(max_connections=20)) as client:
        load = asyncio.gather(*(worker(client, 30) for _ in range(10)))
        await asyncio.sleep(0.15)
        bs[1].proc.signal(signal.SIGKILL)
        await load
    assert len(results) == 300
    assert [r for r in results if r != 200] == []
    assert {"b0", "b2"} <= seen


async def test_refused_connection_is_retried_on_another_instance(gateway: GatewayUnderTest, backends) -> None:
    """An instance that refuses connections costs no failed request, and is then skipped for a while."""
    bs = backends(1)
    dead = free_port()
    from jishi.registry.model import Health, Instance

    gone = Instance(id="gone", service="svc", port=dead, health=Health.PASSING)
    gateway.set([simple_route()], [gone, bs[0].instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        statuses = [(await client.get("/whoami")).status_code for _ in range(10)]
    assert statuses == [200] * 10
    peer = gateway.proxy.table.routes["svc"].balancer.get("svc/gone")
    assert peer is not None and peer.failed_until > 0


async def test_all_instances_down_gives_502_then_no_instance_gives_503(gateway: GatewayUnderTest) -> None:
    """Dead instances → 502 JSON after the tries; a route with no instance in rotation → 503 JSON."""
    from jishi.registry.model import Health, Instance

    dead = [Instance(id=f"d{i}", service="svc", port=free_port(), health=Health.PASSING) for i in range(2)]
    gateway.set([simple_route()], dead)
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        r = await client.get("/x")
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "upstream_unavailable"
        gateway.set([simple_route()], [])
        r = await client.get("/x")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "no_healthy_instance"
        assert "svc" in r.json()["error"]["message"]


async def test_hanging_instance_gives_504_and_gateway_keeps_serving(gateway: GatewayUnderTest, backends) -> None:
    """No response within read_timeout → 504 JSON; the next request on the same client connection works."""
    bs = backends(1)
    route = Route(name="svc", backends=[RouteBackend(service="svc")], read_timeout=0.3)
    gateway.set([route], [bs[0].instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        r = await client.get("/sleep?s=5")
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "upstream_timeout"
        assert (await client.get("/whoami")).status_code == 200


async def test_connect_timeout_gives_504(gateway: GatewayUnderTest, monkeypatch) -> None:
    """A connect that does not finish within connect_timeout on any try → 504 JSON naming the timeout."""
    from jishi.registry.model import Health, Instance

    async def never(addr: tuple[str, int], connect_timeout: float) -> None:
        async with asyncio.timeout(connect_timeout):
            await asyncio.sleep(3600)

    monkeypatch.setattr(gateway.proxy.pool, "open", never)
    slow = [Instance(id=f"s{i}", service="svc", port=free_port(), health=Health.PASSING) for i in range(2)]
    route = Route(name="svc", backends=[RouteBackend(service="svc")], connect_timeout=0.1, retries=1)
    gateway.set([route], slow)
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        r = await client.get("/x")
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert "2 tries" in r.json()["error"]["message"]


async def test_malformed_request_gets_400_and_the_gateway_keeps_serving(gateway: GatewayUnderTest, backends) -> None:
    """Garbage → 400 JSON and the connection closes; a new connection is served normally."""
    bs = backends(1)
    gateway.set([simple_route()], [bs[0].instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b'"code": "bad_request"' in response
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.get("/whoami")).status_code == 200


async def test_post_is_not_resent_after_it_was_sent(gateway: GatewayUnderTest, backends) -> None:
    """A POST whose instance dies mid-request gets a 502, not a second delivery elsewhere."""
    bs = backends(2)
    gateway.set([simple_route()], [b.instance() for b in bs])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        task = asyncio.create_task(client.post("/sleep?s=3", content=b"pay"))
        await asyncio.sleep(0.3)
        for b in bs:
            b.proc.signal(signal.SIGKILL)
        r = await task
    assert r.status_code == 502
