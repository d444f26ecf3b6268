"""Microbenchmark: what each section of a route's policy chain costs the gateway per request, in Python.

    uv run python bench/gateway_chain.py [--requests 20000] [--repeat 7] [--only bare,lb,...]

The in-memory harness of `bench/gateway_micro.py` (real `ClientConnection`s and pooled `UpstreamConnection`s
over fake transports, no sockets, no kernel) runs one proxy per configuration, each with the same one route
carrying a different set of the sections `bench/gateway.py` turns on:

    bare        no policy section, request metrics off
    metrics     request metrics on (`Proxy.stats`), nothing else
    lb          least_request balancing (the route gets a peer group)
    outlier     outlier detection (consecutive 5xx / gateway errors)
    breaker     a circuit breaker over the route's outcomes
    rate_limit  a token bucket per client IP, far above the load
    access_log  the route's JSON-lines access log (flushed every 1000 requests, to a temporary file)
    full        all of the above

The requests run in slices of 1000 (each followed by the flush of the route's access log, counted), interleaved
(every configuration runs one slice in turn, so background load hits all alike), and the best slice of each is
kept, as CPU µs per request (process time): on a shared machine the minimum over many short slices is much
steadier than the minimum over a few long rounds. `--repeat` × `--requests` requests per configuration. The
cost of a section is its best minus bare's.
The last line is `RESULT {json}`: each configuration's µs and each section's cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import uvloop
from gateway_micro import CLIENTS, REQUESTS, RESPONSES, run

from jishi.core.routing import RoutingTable
from jishi.gateway import Proxy
from jishi.gateway.downstream import ClientConnection
from jishi.gateway.stats import Stats
from jishi.gateway.upstream import UpstreamConnection
from jishi.registry.model import Health, Instance, Route, RouteBackend
from jishi.registry.policies import AccessLogSpec, BreakerPolicy, LoadBalancing, OutlierDetection, RateLimit
from jishi.testing import MemoryTransport

SECTIONS = ("metrics", "lb", "outlier", "breaker", "rate_limit", "access_log")
CONFIGS: dict[str, set[str]] = {"bare": set(), **{s: {s} for s in SECTIONS}, "full": set(SECTIONS)}


def route_for(sections: set[str], log_path: Path) -> Route:
    """The benchmark route with the policy sections in `sections` (as bench/gateway.py sets them)."""
    policies: dict[str, Any] = {}
    if "lb" in sections:
        policies["lb"] = LoadBalancing(policy="least_request")
    if "outlier" in sections:
        policies["outlier"] = OutlierDetection(consecutive_5xx=5, consecutive_gateway_errors=5)
    if "breaker" in sections:
        policies["breaker"] = BreakerPolicy(window_size=100, minimum_calls=20)
    if "rate_limit" in sections:
        policies["rate_limit"] = RateLimit(requests=10_000_000, period=1.0)
    if "access_log" in sections:
        policies["access_log"] = AccessLogSpec(path=str(log_path))
    return Route(
        name="hello", prefix="/api/hello/", strip_prefix=True, backends=[RouteBackend(service="hello")], **policies
    )


def build(route: Route, stats: bool) -> tuple[Proxy, list[ClientConnection], list[Any]]:
    """A proxy serving `route` over two in-memory instances, with `CLIENTS` client connections."""
    proxy = Proxy()
    if stats:
        proxy.stats = Stats()
    instances = [Instance(id=f"h{i}", service="hello", port=9000 + i, health=Health.PASSING) for i in range(2)]
    proxy.set_table(RoutingTable.build([route], instances))
    sink: list[Any] = []
    for inst in instances:
        addr = (inst.address, inst.port)
        for _ in range(CLIENTS):
            conn = UpstreamConnection(proxy.pool, addr)
            conn.connection_made(MemoryTransport(addr, keep=False, on_write=partial(sink.append, conn)))  # type: ignore[arg-type]
            proxy.pool.release(conn)
    clients = []
    for i in range(CLIENTS):
        client = ClientConnection(proxy)
        client.connection_made(MemoryTransport(("127.0.0.1", 40000 + i), keep=False))  # type: ignore[arg-type]
        clients.append(client)
    return proxy, clients, sink


def route_logs(proxy: Proxy) -> list[Any]:
    """The access logs of the proxy's routes (each route's policy owns its own)."""
    logs = []
    for entry in proxy.table.routes.values():
        log = getattr(getattr(entry.policy, "c", None), "access_log", None)
        if log is not None:
            logs.append(log)
    return logs


SLICE = 1000  # requests per timed slice; the route access logs are flushed after each (as the gateway's timer does)


def timed(proxy: Proxy, clients: list[ClientConnection], sink: list[Any], n: int) -> float:
    """CPU seconds for `n` requests, route access logs flushed every `SLICE` requests."""
    logs = route_logs(proxy)
    total = 0.0
    for start in range(0, n, SLICE):
        total += run(proxy, clients, sink, [REQUESTS["wrk"]], [RESPONSES["hello"]], min(SLICE, n - start))
        t0 = time.process_time()
        for log in logs:
            log.flush()
        total += time.process_time() - t0
    return total


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="jishi-chain-") as tmp:
        setups = {}
        wanted = {"bare", *args.only.split(",")} if args.only else set(CONFIGS)
        configs = {name: sections for name, sections in CONFIGS.items() if name in wanted}
        for name, sections in configs.items():
            route = route_for(sections, Path(tmp) / f"access-{name}.log")
            setups[name] = build(route, "metrics" in sections)
            timed(*setups[name], 2000)  # warm-up, and a check that responses come back
            answered = sum(c.transport.written for c in setups[name][1])  # type: ignore[attr-defined,misc]
            if answered < 2000 * len(RESPONSES["hello"]) // 2:
                print(f"{name}: the proxy did not answer the warm-up requests", file=sys.stderr)
                return 1
        best = {name: float("inf") for name in configs}
        for _ in range(max(1, args.repeat * args.requests // SLICE)):
            for name, setup in setups.items():
                best[name] = min(best[name], timed(*setup, SLICE))
        for proxy, _, _ in setups.values():
            for log in route_logs(proxy):
                log.close()
    us = {name: seconds / SLICE * 1e6 for name, seconds in best.items()}
    slices = max(1, args.repeat * args.requests // SLICE)
    print(f"{'configuration':14s} {'µs/request':>10s} {'cost':>7s}   (best of {slices} slices of {SLICE})")
    for name, value in us.items():
        print(f"{name:14s} {value:>10.2f} {value - us['bare']:>+7.2f}")
    result: dict[str, float] = {f"{name}_us": round(v, 3) for name, v in us.items()}
    result.update({f"cost_us_{name}": round(v - us["bare"], 3) for name, v in us.items() if name != "bare"})
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--only", default="", help=f"configurations to run besides bare: {','.join(CONFIGS)}")
    args = ap.parse_args()
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
