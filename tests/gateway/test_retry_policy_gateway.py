"""Retry policy end to end: instances killed, hung and failing under load cost no idempotent request; budgets,
non-idempotent opt-in and the total timeout."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
import pytest
from gateway_harness import GatewayUnderTest
from lb_harness import instance, start_faulty

from jishi.registry.model import Route
from jishi.testing import ProcessGroup


def route(**sections: Any) -> Route:
    return Route.model_validate({"name": "svc", "backends": [{"service": "svc"}], **sections})


async def test_killed_hung_and_failing_instances_under_load_fail_no_idempotent_request(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """8 clients for 3 s over 5 instances: one killed (reset, then refused), one hung by SIGSTOP (per-try
    timeout), one answering 500 (retried on 5xx, then ejected) → every request answered 200."""
    ok = [start_faulty(procs, f"ok{i}") for i in range(2)]
    doomed = start_faulty(procs, "doomed")
    hung = start_faulty(procs, "hung")
    bad = start_faulty(procs, "bad", "500")
    gateway.set(
        [
            route(
                lb={"policy": "least_request", "panic_threshold": 0.2},
                retry={
                    "attempts": 4,
                    "on": ["connect_failure", "reset", "timeout", "5xx"],
                    "per_try_timeout": "300ms",
                    "backoff_base": "5ms",
                    "backoff_max": "20ms",
                    "budget": {"percent": 100, "min_retries": 8},
                },
                outlier={"consecutive_5xx": 3, "base_ejection_time": "30s", "max_ejection_percent": 60},
            )
        ],
        [instance(b) for b in (*ok, doomed, hung, bad)],
    )
    results: list[int | str] = []
    served: set[str] = set()
    stop_at = time.monotonic() + 3.0

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            while time.monotonic() < stop_at:
                try:
                    r = await client.get("/whoami")
                    results.append(r.status_code)
                    if r.status_code == 200:
                        served.add(r.json()["name"])
                except httpx.HTTPError as exc:
                    results.append(repr(exc))

    async def chaos() -> None:
        await asyncio.sleep(0.5)
        doomed.proc.signal(signal.SIGKILL)
        await asyncio.sleep(0.5)
        hung.proc.signal(signal.SIGSTOP)

    try:
        await asyncio.gather(chaos(), *(client_loop() for _ in range(8)))
    finally:
        hung.proc.signal(signal.SIGKILL)
    failed = [r for r in results if r != 200]
    assert len(results) > 100 and failed == [], f"{len(failed)} of {len(results)} failed: {failed[:5]}"
    assert {"ok0", "ok1"} <= served and "bad" not in served
    entry = gateway.proxy.table.routes["svc"]
    assert entry.retries_done > 0
    assert "svc/bad" in entry.ejected()
    ejected = {e.subject: e for e in gateway.proxy.events if e.kind == "instance.ejected"}
    assert "svc/bad" in ejected and set(ejected) <= {"svc/bad", "svc/hung", "svc/doomed"}  # timeouts count too
    assert "consecutive 5xx" in ejected["svc/bad"].reason and ejected["svc/bad"].labels["route"] == "svc"


async def test_spent_retry_budget_returns_the_failure_instead_of_retrying(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """With a budget of 0 retries the 500 goes to the client; without a budget it is retried to a good instance."""
    bad, good = start_faulty(procs, "bad", "500"), start_faulty(procs, "good")
    instances = [instance(bad), instance(good)]
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        gateway.set([route(retry={"on": ["5xx"], "budget": {"percent": 0, "min_retries": 0}})], instances)
        statuses = sorted([(await client.get("/whoami")).status_code for _ in range(4)])
        assert statuses == [200, 200, 500, 500]
        assert gateway.proxy.table.routes["svc"].retries_done == 0
        gateway.set([route(retry={"on": ["5xx"], "budget": None})], instances)
        statuses = [(await client.get("/whoami")).status_code for _ in range(4)]
        assert statuses == [200] * 4
        assert gateway.proxy.table.routes["svc"].retries_done == 2


async def test_non_idempotent_requests_are_resent_only_when_the_route_opts_in(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """A POST answered 503-class by one instance is relayed as is, unless the route allows resending it."""
    bad, good = start_faulty(procs, "bad", "500"), start_faulty(procs, "good")
    instances = [instance(bad), instance(good)]
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        gateway.set([route(retry={"on": ["5xx"]})], instances)
        statuses = sorted([(await client.post("/echo", content=b"order")).status_code for _ in range(2)])
        assert statuses == [200, 500]
        gateway.set([route(retry={"on": ["5xx"], "non_idempotent": True})], instances)
        for _ in range(2):
            r = await client.post("/echo", content=b"order")
            assert r.status_code == 200 and r.content == b"order"


async def test_total_timeout_bounds_all_tries_with_a_504(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """Per-try 300 ms with retries on timeout, total 500 ms, every instance slow → 504 at ~0.5 s naming it."""
    slow = [start_faulty(procs, f"slow{i}") for i in range(3)]
    gateway.set(
        [route(timeout="500ms", retry={"attempts": 5, "on": ["timeout"], "per_try_timeout": "300ms"})],
        [instance(b) for b in slow],
    )
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        t0 = time.monotonic()
        r = await client.get("/sleep?s=5")
        elapsed = time.monotonic() - t0
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert "route's timeout of 0.5 s" in r.json()["error"]["message"]
    assert "2 tries" in r.json()["error"]["message"]
    assert 0.45 <= elapsed < 1.2


async def test_total_timeout_cuts_off_a_response_body_still_arriving(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """Total 500 ms; the instance answers at once but sends its body over 2 s (a chunk every 50 ms, each well
    within the read timeout) → the client gets the head and part of the body, and the connection closes at
    ~0.5 s instead of 2 s."""
    slow = start_faulty(procs, "slow")
    gateway.set([route(timeout="500ms")], [instance(slow)])
    got = bytearray()
    t0 = time.monotonic()
    async with (
        httpx.AsyncClient(base_url=gateway.url) as client,
        client.stream("GET", "/chunked", params={"n": "40", "gap": "0.05"}) as r,
    ):
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            async for piece in r.aiter_raw():
                got += piece
    elapsed = time.monotonic() - t0
    assert 0.45 <= elapsed < 1.2, elapsed
    assert got.startswith(b"chunk-0\n") and b"chunk-39" not in got


def test_retry_budget_allows_its_share_of_tries_in_flight_then_returns_failures() -> None:
    """Budget 20 %, min 3: with 10 tries in flight 3 retries may start and the 4th is refused; at 20 tries in
    flight a 4th fits; a retry's slot comes back when its try ends (exact, no I/O)."""
    from types import SimpleNamespace

    from jishi.core.retry import Action, Failure
    from jishi.core.routing import RoutingTable
    from jishi.gateway import balancing, failover
    from jishi.gateway.exchange import Exchange
    from jishi.registry.model import Health, Instance
    from jishi.testing import FakeClock

    clock = FakeClock()
    loop = SimpleNamespace(time=clock)
    proxy = SimpleNamespace(loop=loop, groups=[], events=[], table=None, rng=None)
    client: Any = SimpleNamespace(loop=loop, proxy=proxy)
    spec = route(retry={"on": ["5xx"], "budget": {"percent": 20, "min_retries": 3}})
    table = RoutingTable.build([spec], [Instance(id="a", service="svc", port=9000, health=Health.PASSING)])
    balancing.attach(table, None, proxy)  # type: ignore[arg-type]
    entry = table.routes["svc"]
    peer = entry.balancer.peers[0]

    def started() -> Exchange:
        ex = Exchange(clock.now, b"/")
        ex.route, ex.peer = entry, peer
        balancing.begin(ex, entry, peer, clock.now)
        return ex

    exchanges = [started() for _ in range(10)]
    verdicts = [failover.allow_retry(client, ex, entry, Failure.STATUS) for ex in exchanges[:4]]
    assert verdicts == [Action.RETRY_OTHER] * 3 + [Action.RELAY]
    assert failover.allow_retry(client, exchanges[4], entry, Failure.LOST) is Action.GIVE_UP
    exchanges += [started() for _ in range(10)]
    assert failover.allow_retry(client, exchanges[5], entry, Failure.STATUS) is Action.RETRY_OTHER
    assert failover.allow_retry(client, exchanges[6], entry, Failure.STATUS) is Action.RELAY
    balancing.end(client, exchanges[0], 200)  # a retry's try ends: its slot is free again
    assert failover.allow_retry(client, exchanges[7], entry, Failure.STATUS) is Action.RETRY_OTHER
    assert entry.budget.active_retries == 4 and entry.budget.active_requests == 19
