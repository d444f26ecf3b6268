"""Per-route access logs: one JSON line per request of the route in its own file, successes sampled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from gateway_harness import GatewayUnderTest, simple_route

from jishi.gateway import policy
from jishi.registry.policies import AccessLogSpec, RateLimit


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_route_log_has_one_line_per_request_of_its_route(
    gateway: GatewayUnderTest, backends, tmp_path: Path
) -> None:
    """Requests of route a go to a.log in the gateway's record shape (flushed within its interval); route b's
    requests do not."""
    (b,) = backends(1)
    log_a = tmp_path / "logs" / "a.log"
    gateway.set(
        [simple_route("a", "/a", access_log=AccessLogSpec(path=str(log_a))), simple_route("b", "/b")],
        [b.instance("a"), b.instance("b")],
    )
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            await client.get("/a/whoami?x=1")
            await client.get("/b/whoami")
            await client.post("/a/echo", content=b"12345")
        await asyncio.sleep(0.7)  # the route log flushes within its interval (0.5 s)
        records = lines(log_a)
    finally:
        await policy.close(gateway.proxy.table)
    assert [(r["method"], r["path"], r["status"]) for r in records] == [
        ("GET", "/a/whoami?x=1", 200),
        ("POST", "/a/echo", 200),
    ]
    first = records[0]
    assert set(first) == {"time", "client", "method", "path", "status", "bytes", "upstream", "duration_ms", "tries"}
    assert first["client"] == "127.0.0.1" and first["upstream"] == f"127.0.0.1:{b.port}" and first["tries"] == 1
    assert records[1]["bytes"] == 5


async def test_sample_logs_a_share_of_successes_and_every_error(
    gateway: GatewayUnderTest, backends, tmp_path: Path
) -> None:
    """With sample 0.2, about a fifth of 200 successes are logged, and every 429 is."""
    (b,) = backends(1)
    path = tmp_path / "sampled.log"
    spec = AccessLogSpec(path=str(path), sample=0.2)
    gateway.set(
        [simple_route(access_log=spec, rate_limit=RateLimit(requests=200, period=3600, key="route"))], [b.instance()]
    )
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for _ in range(210):
            await client.get("/whoami")
    await policy.close(gateway.proxy.table)  # closing flushes
    records = lines(path)
    ok = sum(r["status"] == 200 for r in records)
    refused = sum(r["status"] == 429 for r in records)
    assert refused == 10
    assert 15 <= ok <= 70
