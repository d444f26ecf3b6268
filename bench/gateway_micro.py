"""Microbenchmark: the gateway's Python cost per proxied request, with in-memory transports.

    uv run python bench/gateway_micro.py [--requests 30000] [--repeat 9] [--kind wrk|browser|chunked]
                                         [--response hello|server] [--vary] [--no-access-log] [--no-stats]
                                         [--profile] [--policy breaker,rate_limit,...]

No sockets and no other processes: a `Proxy` with a real routing table (one route, two instances) drives
real `ClientConnection`s and pooled `UpstreamConnection`s whose transports are in-memory fakes. Each request
is one `data_received` on a client connection (the request bytes as a client sends them) and one on the
instance connection that got the proxied request (its response). With `--vary` no two requests and no two
responses are alike (one header value differs), so nothing is served from a cache of recently seen heads.
Everything the gateway does per request runs: parsing both ways, routing, smooth weighted round-robin, the
pool, head building, the request metrics (`jishi.gateway.stats`, off with `--no-stats`), the access log
(flushed every 1000 requests, to a temporary file). The kernel's share
(syscalls, the event loop waiting) is not in this number; `bench/gateway.py` measures the whole process
against nginx.

Runs `--repeat` × `--requests` requests in slices of 1000 and prints the best slice as CPU µs per request
(process time, not wall time: the machine is shared, and both the CPU clock and the minimum over many short
slices are the figures least disturbed by other work; a 30000-request run is rarely undisturbed), and with
`--profile` the top functions by own time under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import uvloop

from jishi.core.routing import RoutingTable
from jishi.gateway import AccessLog, Proxy
from jishi.gateway.downstream import ClientConnection
from jishi.gateway.stats import Stats
from jishi.gateway.upstream import UpstreamConnection
from jishi.registry.model import Health, Instance, Route, RouteBackend
from jishi.registry.policies import AdaptiveConcurrency, BreakerPolicy, BulkheadPolicy, HeaderEdits, RateLimit, Rewrite
from jishi.testing import MemoryTransport

REQUESTS = {
    # What wrk sends (the nginx comparison in bench/gateway.py).
    "wrk": b"GET /api/hello/ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    # A typical browser/curl request: a dozen headers.
    "browser": (
        b"GET /api/hello/items?page=2&size=20 HTTP/1.1\r\n"
        b"Host: shop.example.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\n"
        b"Accept-Encoding: gzip, deflate, br\r\n"
        b"Referer: https://shop.example.com/\r\n"
        b"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
        b"Connection: keep-alive\r\n"
        b"Upgrade-Insecure-Requests: 1\r\n"
        b"Sec-Fetch-Dest: document\r\n"
        b"Sec-Fetch-Mode: navigate\r\n"
        b"X-Request-Id: 4f9c2b7e-1d2a-4c9b-8e7f-0a1b2c3d4e5f\r\n"
        b"\r\n"
    ),
    # What a gateway behind a load balancer or CDN gets: a keep-alive request carrying X-Forwarded-For.
    "proxied": (
        b"GET /api/hello/items?page=2 HTTP/1.1\r\nHost: shop.example.com\r\nConnection: keep-alive\r\n"
        b"X-Forwarded-For: 203.0.113.7\r\nAccept: application/json\r\n\r\n"
    ),
    # A small POST with a chunked body (re-chunked by the gateway).
    "chunked": (
        b"POST /api/hello/orders HTTP/1.1\r\nHost: shop.example.com\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n11\r\n{"item": 1234567}\r\n0\r\n\r\n'
    ),
}
RESPONSES = {
    # A short response with a few headers.
    "hello": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\nok"
    ),
    # What a typical web framework behind a server answers (including a hop-by-hop header to drop).
    "server": (
        b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nServer: uvicorn\r\n"
        b"Content-Type: application/json\r\nContent-Length: 16\r\nConnection: keep-alive\r\n"
        b'Cache-Control: no-store\r\n\r\n{"status": "ok"}'
    ),
}
CLIENTS = 64
SLICE = 1000  # requests per timed slice


# `--policy`: route policy sections that admit every request of the run, so their whole path is measured.
POLICIES: dict[str, Any] = {
    "rate_limit": RateLimit(requests=10**9, period=1, key="ip"),
    "concurrency": AdaptiveConcurrency(initial_limit=1000, max_limit=1000),
    "bulkhead": BulkheadPolicy(max_concurrent=1000),
    "breaker": BreakerPolicy(),
    "rewrite": Rewrite(request_headers=HeaderEdits(set={"X-Tenant": "bench"})),
}


def build(access_log: Path | None, policies: tuple[str, ...] = ()) -> tuple[Proxy, list[ClientConnection], list[Any]]:
    proxy = Proxy(access_log=AccessLog(access_log) if access_log is not None else None)
    route = Route(
        name="hello",
        prefix="/api/hello/",
        strip_prefix=True,
        backends=[RouteBackend(service="hello")],
        **{name: POLICIES[name] for name in policies},
    )
    instances = [Instance(id=f"h{i}", service="hello", port=9000 + i, health=Health.PASSING) for i in range(2)]
    proxy.set_table(RoutingTable.build([route], instances))
    upstream_sink: list[Any] = []
    for inst in instances:
        addr = (inst.address, inst.port)
        for _ in range(CLIENTS):
            conn = UpstreamConnection(proxy.pool, addr)
            transport = MemoryTransport(addr, keep=False, on_write=partial(upstream_sink.append, conn))
            conn.connection_made(transport)  # type: ignore[arg-type]
            proxy.pool.release(conn)
    clients = []
    for i in range(CLIENTS):
        client = ClientConnection(proxy)
        client.connection_made(MemoryTransport(("127.0.0.1", 40000 + i), keep=False))  # type: ignore[arg-type]
        clients.append(client)
    return proxy, clients, upstream_sink


def variants(request: bytes, n: int) -> list[bytes]:
    """`n` copies of `request` that differ in one header value (as X-Request-Id does between real requests)."""
    head, sep, body = request.partition(b"\r\n\r\n")
    return [head + b"\r\nX-Trace: %08d" % i + sep + body for i in range(n)]


def run(
    proxy: Proxy,
    clients: list[ClientConnection],
    upstream_sink: list[Any],
    requests: list[bytes],
    responses: list[bytes],
    n: int,
) -> float:
    """Proxy `n` requests round-robin over the clients; returns the CPU seconds it took."""
    access_log = proxy.access_log
    ncl = len(clients)
    nreq = len(requests)
    nresp = len(responses)
    proxy.writes.hold()  # no loop turns here: this loop makes the writes itself
    flush = proxy.writes.run  # what the event loop calls at the end of each turn
    t0 = time.process_time()
    for i in range(n):
        clients[i % ncl].data_received(requests[i % nreq])
        flush()
        upstream = upstream_sink.pop()
        upstream_sink.clear()
        upstream.data_received(responses[i % nresp])
        flush()
        if access_log is not None and i % 1000 == 999:
            access_log.flush()
    return time.process_time() - t0


async def main_async(args: argparse.Namespace) -> int:
    request = REQUESTS[args.kind]
    requests = variants(request, 4096) if args.vary else [request]
    response = RESPONSES[args.response]
    responses = variants(response, 4093) if args.vary else [response]
    with tempfile.TemporaryDirectory(prefix="jishi-micro-") as tmp:
        log_path = None if args.no_access_log else Path(tmp) / "access.log"
        policies = tuple(p for p in args.policy.split(",") if p)
        proxy, clients, sink = build(log_path, policies)
        if not args.no_stats:
            proxy.stats = Stats()
        run(proxy, clients, sink, requests, responses, 2000)  # warm-up, and a check that responses come back
        answered = sum(c.transport.written for c in clients)  # type: ignore[attr-defined,misc]
        if answered < 2000 * len(response) // 2:
            print("the proxy did not answer the warm-up requests", file=sys.stderr)
            return 1
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            run(proxy, clients, sink, requests, responses, args.requests)
            prof.disable()
            stats = pstats.Stats(prof).sort_stats("tottime")
            stats.print_stats(18)
        slices = max(1, args.repeat * args.requests // SLICE)
        best = min(run(proxy, clients, sink, requests, responses, SLICE) for _ in range(slices)) / SLICE
        if proxy.access_log is not None:
            proxy.access_log.close()
            proxy.access_log = None
    us = best * 1e6
    kind = (
        f"{args.kind}/{args.response}"
        + (" (varied)" if args.vary else "")
        + (f" +{args.policy}" if args.policy else "")
    )
    print(f"{kind}: {us:.2f} µs/request (best of {slices} slices of {SLICE} requests, "
          f"access log {'off' if args.no_access_log else 'on'}, "
          f"metrics {'off' if args.no_stats else 'on'})")  # fmt: skip
    print(f"RESULT_MICRO {kind} {us:.3f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--kind", choices=sorted(REQUESTS), default="wrk")
    ap.add_argument("--no-access-log", action="store_true")
    ap.add_argument("--no-stats", action="store_true", help="do not record request metrics")
    ap.add_argument("--response", choices=sorted(RESPONSES), default="hello")
    ap.add_argument("--vary", action="store_true", help="requests and responses differ in one header value each")
    ap.add_argument("--policy", default="", help=f"route policy sections, comma-separated: {','.join(POLICIES)}")
    ap.add_argument("--profile", action="store_true", help="print the top functions under cProfile first")
    args = ap.parse_args()
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
