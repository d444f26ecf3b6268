"""Per-route access logs: one JSON line per request of the route in its own file, successes sampled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from gateway_harness import GatewayUnderTest, simple_route, start_backend

from jishi.core.balancer import Peer, PeerSpec
from jishi.gateway import policy
from jishi.gateway.accesslog import AccessLog
from jishi.gateway.exchange import Exchange
from jishi.gateway.snapshot import SnapshotFile
from jishi.gateway.view import RegistryView
from jishi.registry.policies import AccessLogSpec, RateLimit
from jishi.testing import ProcessGroup, free_port, wait_for_port


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


def test_a_gateway_process_writes_its_route_log_before_it_exits(procs: ProcessGroup, tmp_path: Path) -> None:
    """`python -m jishi.gateway` with a route access log: requests answered just before SIGTERM are in the file
    once the process has exited."""
    backend = start_backend(procs, "b0")
    log_path = tmp_path / "route.log"
    view = RegistryView()
    view.routes["/jishi/routes/svc"] = simple_route("svc", access_log=AccessLogSpec(path=str(log_path)))
    inst = backend.instance("svc")
    view.instances[inst.key] = inst
    SnapshotFile(tmp_path / "gw" / "snapshot.json").save(view.dump())
    port = free_port()
    gw = procs.python("gateway", "-m", "jishi.gateway", "--control-plane", f"http://127.0.0.1:{free_port()}",
                      "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "gw"))  # fmt: skip
    wait_for_port(port, timeout=30)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        statuses = [client.get(f"/whoami?n={i}").status_code for i in range(3)]
    gw.signal(15)
    assert gw.popen.wait(15) == 0
    assert statuses == [200] * 3
    assert [r["path"] for r in lines(log_path)] == ["/whoami?n=0", "/whoami?n=1", "/whoami?n=2"]


def test_lines_quote_what_json_needs_and_name_no_upstream_without_a_try(tmp_path: Path) -> None:
    """A flushed batch: a path with a quote, a backslash and a non-ASCII byte stays exact through JSON, repeated
    values are written every time, and an exchange never tried has an empty upstream whatever its peer field."""
    peer = Peer(PeerSpec(key="s/a", address="127.0.0.1", port=9001))
    log = AccessLog(tmp_path / "a.log")
    for url, status, tries in ((b'/q"\\\xe9', 200, 1), (b'/q"\\\xe9', 200, 1), (b"/refused", 429, 0)):
        ex = Exchange(10.0, url)
        ex.method, ex.status, ex.bytes_out, ex.peer, ex.tries = b"GET", status, 2, peer, tries
        log.record(b"10.0.0.1", ex, 10.25)
    log.close()
    got = lines(tmp_path / "a.log")
    assert [line["path"] for line in got] == ['/q"\\\xe9', '/q"\\\xe9', "/refused"]
    assert [line["upstream"] for line in got] == ["127.0.0.1:9001", "127.0.0.1:9001", ""]
    assert [line["tries"] for line in got] == [1, 1, 0] and {line["client"] for line in got} == {"10.0.0.1"}
    assert all(line["duration_ms"] == 250.0 for line in got)
