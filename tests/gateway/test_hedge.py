"""Request hedging end to end: a slow instance's requests are also sent to a quick one and the first head wins;
POST, a single instance and a spent retry budget are never hedged; the try accounting balances afterwards."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import Backend, GatewayUnderTest
from lb_harness import instance, start_faulty
from pydantic import ValidationError

from jishi.core.resilience import HedgePolicy
from jishi.gateway.admin import render
from jishi.gateway.stats import policy_state
from jishi.registry.model import Route
from jishi.testing import ProcessGroup, free_port, wait_for_port

_HERE = str(Path(__file__).parent)

# A backend whose every answer is late by argv[3] seconds (the head is written only after the wait); with
# argv[4] "reset" it drops the connection after the wait instead of answering.
_SLOW = """
import asyncio, sys
import backend

_respond = backend.Handler.respond

async def respond(self, method, path, query):
    await asyncio.sleep(float(sys.argv[3]))
    if sys.argv[4:] == ["reset"]:
        self.transport.abort()
        return
    await _respond(self, method, path, query)

backend.Handler.respond = respond
backend.PORT, backend.NAME = int(sys.argv[1]), sys.argv[2]
asyncio.run(backend.main())
"""


def start_slow(procs: ProcessGroup, name: str, delay: float = 1.0, *, reset: bool = False) -> Backend:
    port = free_port()
    argv = [sys.executable, "-c", _SLOW, str(port), name, str(delay), *(["reset"] if reset else [])]
    proc = procs.start(name, argv, env={"PYTHONPATH": _HERE})
    wait_for_port(port)
    return Backend(name, port, proc)


def route(**sections: Any) -> Route:
    return Route.model_validate(
        {"name": "svc", "backends": [{"service": "svc"}], "lb": {"policy": "round_robin"}, **sections}
    )


def settled(gateway: GatewayUnderTest) -> tuple[list[int], int, int]:
    """In-flight tries per peer, and the retry budget's tries and retries in flight."""
    entry = gateway.proxy.table.routes["svc"]
    active = sorted(p.endpoint.active for p in entry.lb.peers)
    budget = entry.budget
    return active, budget.active_requests if budget else 0, budget.active_retries if budget else 0


async def eventually(check: Any, within: float = 5.0) -> None:
    """Poll `check()` on the loop until it is truthy (AssertionError after `within` seconds)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not settled within {within} s"
        await asyncio.sleep(0.02)


async def timed(client: httpx.AsyncClient, method: str, path: str) -> tuple[float, httpx.Response]:
    t0 = time.monotonic()
    r = await client.request(method, path)
    return time.monotonic() - t0, r


async def test_slow_instance_is_hedged_and_the_quick_answer_wins(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """One instance answers after 1 s, the other at once; delay 50 ms → every GET ends well under 1 s with the
    quick instance's answer, hedges are counted, and in-flight counts and the budget are back to 0."""
    slow = start_slow(procs, "slow", 1.0)
    fast = start_faulty(procs, "fast")
    gateway.set(
        [route(hedge={"delay": "50ms"}, retry={"budget": {"percent": 100, "min_retries": 4}})],
        [instance(slow), instance(fast)],
    )
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        results = [await timed(client, "GET", "/whoami") for _ in range(6)]
        concurrent = await asyncio.gather(*(timed(client, "GET", "/whoami") for _ in range(6)))
    for took, r in [*results, *concurrent]:
        assert r.status_code == 200 and r.json()["name"] == "fast"
        assert took < 0.6, f"a request took {took:.3f} s"
    counters = gateway.proxy.table.routes["svc"].counters
    assert counters.hedges_sent >= 3 and counters.hedges_won == counters.hedges_sent
    assert settled(gateway) == ([0, 0], 0, 0)
    state = policy_state(gateway.proxy)["svc"]  # what the report carries, and /metrics shows
    assert (state["hedges_sent"], state["hedges_won"]) == (counters.hedges_sent, counters.hedges_won)
    exposition = render(lambda: {"policies": {"svc": state}}).decode()
    assert f'jishi_gateway_hedges_total{{outcome="won",route="svc"}} {float(counters.hedges_won)}' in exposition


async def test_a_try_failing_while_its_hedge_is_in_flight_costs_no_retry(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """One instance resets after 200 ms, the other answers after 400 ms: whichever went first, the hedge (or the
    first try) to the answering one goes on alone — 200 from it, no retry started, accounting back to 0."""
    broken = start_slow(procs, "broken", 0.2, reset=True)
    late = start_slow(procs, "late", 0.4)
    gateway.set(
        [route(hedge={"delay": "50ms"}, retry={"budget": {"percent": 100, "min_retries": 4}})],
        [instance(broken), instance(late)],
    )
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        results = [await timed(client, "GET", "/whoami") for _ in range(2)]
    for took, r in results:
        assert r.status_code == 200 and r.json()["name"] == "late" and took < 0.9
    entry = gateway.proxy.table.routes["svc"]
    assert entry.counters.hedges_sent == 2 and entry.retries_done == 0
    assert settled(gateway) == ([0, 0], 0, 0)


async def test_post_is_never_hedged(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """A POST whose first try goes to the slow instance waits for it: no hedge is sent."""
    slow = start_slow(procs, "slow", 0.6)
    fast = start_faulty(procs, "fast")
    gateway.set([route(hedge={"delay": "50ms"})], [instance(slow), instance(fast)])
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        results = [await timed(client, "POST", "/whoami") for _ in range(2)]
    assert sorted(r.json()["name"] for _, r in results) == ["fast", "slow"]
    assert max(took for took, _ in results) >= 0.55
    assert gateway.proxy.table.routes["svc"].counters.hedges_sent == 0
    assert settled(gateway)[0] == [0, 0]


async def test_single_instance_is_not_hedged(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """With one instance there is nowhere to hedge to: the request waits for it."""
    slow = start_slow(procs, "slow", 0.4)
    gateway.set([route(hedge={"delay": "50ms", "max_hedges": 3})], [instance(slow)])
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        took, r = await timed(client, "GET", "/whoami")
    assert r.status_code == 200 and r.json()["name"] == "slow" and took >= 0.35
    assert gateway.proxy.table.routes["svc"].counters.hedges_sent == 0
    assert settled(gateway)[0] == [0]


async def test_spent_retry_budget_refuses_the_hedge(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """A retry budget of 0 % and no minimum admits no hedge: the slow instance's request waits for it."""
    slow = start_slow(procs, "slow", 0.6)
    fast = start_faulty(procs, "fast")
    gateway.set(
        [route(hedge={"delay": "50ms"}, retry={"budget": {"percent": 0, "min_retries": 0}})],
        [instance(slow), instance(fast)],
    )
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        results = [await timed(client, "GET", "/whoami") for _ in range(2)]
    assert sorted(r.json()["name"] for _, r in results) == ["fast", "slow"]
    assert gateway.proxy.table.routes["svc"].counters.hedges_sent == 0
    assert settled(gateway) == ([0, 0], 0, 0)


async def test_client_gone_while_hedged_balances_the_accounting(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """Both instances slow: the client leaves while the first try and its hedge are in flight → both tries end."""
    slow = [start_slow(procs, f"slow{i}", 1.0) for i in range(2)]
    gateway.set(
        [route(hedge={"delay": "50ms"}, retry={"budget": {"percent": 100, "min_retries": 4}})],
        [instance(b) for b in slow],
    )
    async with httpx.AsyncClient(base_url=gateway.url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/whoami")
    await eventually(lambda: settled(gateway) == ([0, 0], 0, 0))
    assert gateway.proxy.table.routes["svc"].counters.hedges_sent == 1


async def test_route_change_while_hedged_balances_the_old_group(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """The table changes (a third instance) while a request and its hedge are in flight: the answer comes, and the
    old route's peer group and budget end with nothing in flight, as does the new one."""
    slow = [start_slow(procs, f"slow{i}", 0.5) for i in range(3)]
    hedged = route(hedge={"delay": "50ms"}, retry={"budget": {"percent": 100, "min_retries": 4}})
    gateway.set([hedged], [instance(b) for b in slow[:2]])
    old = gateway.proxy.table.routes["svc"]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        pending = asyncio.ensure_future(client.get("/whoami"))
        await eventually(lambda: sorted(p.endpoint.active for p in old.lb.peers) == [1, 1])
        gateway.set([hedged], [instance(b) for b in slow])
        new = gateway.proxy.table.routes["svc"]
        assert new.lb is not old.lb
        r = await pending
    assert r.status_code == 200
    assert [p.endpoint.active for p in old.lb.peers] == [0, 0]
    assert (old.budget.active_requests, old.budget.active_retries) == (0, 0)
    assert settled(gateway) == ([0, 0, 0], 0, 0)
    assert new.counters.hedges_sent == 1


async def test_total_timeout_ends_the_hedge_too(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """Both instances slow, total timeout 300 ms: 504 at the timeout, and no try is left in flight."""
    slow = [start_slow(procs, f"slow{i}", 1.0) for i in range(2)]
    gateway.set([route(hedge={"delay": "50ms"}, timeout="300ms")], [instance(b) for b in slow])
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        took, r = await timed(client, "GET", "/whoami")
    assert r.status_code == 504 and took < 0.9
    assert settled(gateway)[0] == [0, 0]


def test_hedge_section_is_validated() -> None:
    """`delay` must be positive and `max_hedges` 1..3; durations are read like every other."""
    assert route(hedge={"delay": "50ms"}).hedge.delay == pytest.approx(0.05)
    for bad in ({"delay": 0}, {"delay": "10ms", "max_hedges": 4}, {"delay": "10ms", "max_hedges": 0}, {}):
        with pytest.raises(ValidationError):
            route(hedge=bad)


def test_hedges_are_due_delay_apart_up_to_max() -> None:
    """The timer decision: not before `delay`, then every `delay` after the previous hedge, at most max_hedges."""
    hedge = HedgePolicy(0.25, max_hedges=2).start(10.0)
    assert hedge.next_at == 10.25
    assert not hedge.try_hedge(10.2499)
    assert hedge.try_hedge(10.25)
    assert hedge.next_at == 10.5
    assert not hedge.try_hedge(10.4999) and hedge.try_hedge(10.5)
    assert hedge.next_at is None and not hedge.try_hedge(99.0)
