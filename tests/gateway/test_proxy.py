"""The proxy against real backend processes: balancing, headers, streaming, keep-alive and routing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
from gateway_harness import GatewayUnderTest, simple_route


async def test_requests_are_spread_evenly_over_instances(gateway: GatewayUnderTest, backends) -> None:
    """30 GETs over 3 equal instances reach each exactly 10 times."""
    bs = backends(3)
    gateway.set([simple_route()], [b.instance() for b in bs])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        names = [(await client.get("/whoami")).json()["name"] for _ in range(30)]
    assert Counter(names) == {"b0": 10, "b1": 10, "b2": 10}


async def test_weights_shape_the_distribution(gateway: GatewayUnderTest, backends) -> None:
    """An instance of weight 3 gets three times the requests of one of weight 1."""
    bs = backends(2)
    gateway.set([simple_route()], [bs[0].instance(weight=3), bs[1].instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        names = [(await client.get("/whoami")).json()["name"] for _ in range(40)]
    assert Counter(names) == {"b0": 30, "b1": 10}


async def test_forwarded_headers_are_set_and_host_is_kept(gateway: GatewayUnderTest, backends) -> None:
    """X-Forwarded-For is appended, X-Real-IP/Proto/Host set, Host preserved, hop-by-hop headers dropped."""
    bs = backends(1)
    gateway.set([simple_route()], [bs[0].instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        r = await client.get(
            "/whoami",
            headers={
                "Host": "shop.test",
                "X-Forwarded-For": "10.0.0.1",
                "X-Real-IP": "6.6.6.6",
                "Keep-Alive": "timeout=5",
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "hop",
                "X-Custom": "kept",
            },
        )
    h = r.json()["headers"]
    assert h["host"] == "shop.test"
    assert h["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "shop.test"
    assert h["x-custom"] == "kept"
    assert "keep-alive" not in h and "x-secret" not in h and "connection" not in h


async def test_prefix_stripping_and_host_routing(gateway: GatewayUnderTest, backends) -> None:
    """/api/a/… goes to service a without its prefix; a Host-routed request goes to its own service."""
    a, b, c = backends(3)
    gateway.set(
        [
            simple_route("a", "/api/a/", strip_prefix=True),
            simple_route("b", "/api/b"),
            simple_route("c", "/", host="*.example.com"),
        ],
        [a.instance("a"), b.instance("b"), c.instance("c")],
    )
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        ra = (await client.get("/api/a/whoami?x=1")).json()
        rb = (await client.get("/api/b/whoami")).json()
        rc = (await client.get("/api/a/whoami", headers={"Host": "shop.example.com"})).json()
        r404 = await client.get("/nothing")
    assert (ra["name"], ra["path"]) == ("b0", "/whoami?x=1")
    assert (rb["name"], rb["path"]) == ("b1", "/api/b/whoami")
    assert rc["name"] == "b2"
    assert r404.status_code == 404
    assert r404.json()["error"]["code"] == "no_route"


async def test_keep_alive_connections_are_reused(gateway: GatewayUnderTest, backends) -> None:
    """Sequential requests over one client connection reuse one pooled connection to the instance."""
    bs = backends(1)
    gateway.set([simple_route()], [bs[0].instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        conns = {(await client.get("/whoami")).json()["conn"] for _ in range(20)}
    assert len(conns) == 1
    assert gateway.proxy.pool.idle_count() == 1


async def test_connection_closed_by_instance_is_not_reused(gateway: GatewayUnderTest, backends) -> None:
    """A response with Connection: close drops the pooled connection; the next request opens a new one."""
    bs = backends(1)
    gateway.set([simple_route()], [bs[0].instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        first = (await client.get("/close")).json()["conn"]
        second = (await client.get("/whoami")).json()["conn"]
    assert second == first + 1


async def test_chunked_response_is_streamed(gateway: GatewayUnderTest, backends) -> None:
    """A chunked response arrives in pieces and complete."""
    bs = backends(1)
    gateway.set([simple_route()], [bs[0].instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client, client.stream("GET", "/chunked?n=20") as r:
        assert r.headers["transfer-encoding"] == "chunked"
        pieces = [p async for p in r.aiter_raw()]
        body = b"".join(pieces)
    assert body == b"".join(f"chunk-{i}\n".encode() for i in range(20))
    assert len(pieces) > 1


async def test_chunked_request_body_is_forwarded(gateway: GatewayUnderTest, backends) -> None:
    """A chunked request body reaches the instance whole."""
    bs = backends(1)
    gateway.set([simple_route()], [bs[0].instance()])

    async def gen():
        for i in range(50):
            yield f"part-{i};".encode()

    async with httpx.AsyncClient(base_url=gateway.url) as client:
        r = await client.post("/echo", content=gen())
    assert r.content == b"".join(f"part-{i};".encode() for i in range(50))
    assert json.loads(r.headers["x-echo-headers"])["transfer-encoding"] == "chunked"


async def test_large_bodies_stream_both_ways(gateway: GatewayUnderTest, backends) -> None:
    """A 20 MB upload and a 20 MB download pass through intact."""
    bs = backends(1)
    gateway.set([simple_route()], [bs[0].instance()])
    payload = bytes(range(256)) * (20 * 4096)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        up = await client.post("/echo", content=payload)
        down = await client.get("/big?size=20000000")
    assert up.content == payload
    assert len(down.content) == 20_000_000


async def test_head_and_read_to_close_responses(gateway: GatewayUnderTest, backends) -> None:
    """HEAD gets headers only and the connection stays usable; a close-delimited body is re-chunked."""
    bs = backends(1)
    gateway.set([simple_route()], [bs[0].instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        head = await client.head("/whoami")
        after = await client.get("/whoami")
        eof = await client.get("/eof")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
    assert after.json()["name"] == "b0"
    assert eof.content == b"until-close"


async def test_pipelined_requests_are_answered_in_order(gateway: GatewayUnderTest, backends) -> None:
    """Three requests sent at once on one connection get three responses in request order."""
    bs = backends(1)
    gateway.set([simple_route()], [bs[0].instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"".join(b"GET /sleep?s=0.0%d HTTP/1.1\r\nHost: x\r\n\r\n" % (3 - i) for i in range(3)))
    await writer.drain()
    paths = []
    for _ in range(3):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        paths.append(json.loads(await reader.readexactly(length))["path"])
    writer.close()
    assert paths == [f"/sleep?s=0.0{3 - i}" for i in range(3)]


async def test_access_log_writes_one_json_line_per_request(backends, tmp_path) -> None:
    """Each request becomes one JSON line with status, method, path, upstream and tries, written in batches."""
    from gateway_harness import GatewayUnderTest

    from jishi.gateway import AccessLog, Proxy

    bs = backends(1)
    log_path = tmp_path / "access.log"
    proxy = Proxy(access_log=AccessLog(log_path))
    gw = GatewayUnderTest(proxy, await proxy.start("127.0.0.1", 0))
    try:
        gw.set([simple_route()], [bs[0].instance()])
        async with httpx.AsyncClient(base_url=gw.url) as client:
            await client.get("/whoami?a=1")
            await client.get("/nothing-here", headers={"Host": "x"})
        assert not log_path.read_text()  # buffered, not written per request
    finally:
        await proxy.stop(grace=1.0)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(e["method"], e["path"], e["status"], e["tries"]) for e in lines] == [
        ("GET", "/whoami?a=1", 200, 1),
        ("GET", "/nothing-here", 200, 1),
    ]
    assert lines[0]["upstream"] == f"127.0.0.1:{bs[0].port}" and lines[0]["bytes"] > 0
    assert {"time", "client", "duration_ms"} <= set(lines[0])
