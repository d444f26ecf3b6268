"""Client policies without sockets: instances in a real Registry, answers from an httpx.MockTransport."""

from __future__ import annotations

import asyncio

import httpx
from client_harness import eventually

from jishi.client import Client, FailbackPolicy, ServiceCallError, ServiceDirectory, Strategy, is_empty
from jishi.core.resilience import Bulkhead, RetryBudget, RetryPolicy
from jishi.registry import Health, Instance, Registry

FAST_RETRY = RetryPolicy(max_attempts=3, base=0.001, cap=0.002)


async def register(registry: Registry, directory: ServiceDirectory, *ports: int) -> None:
    lease = await registry.grant_lease(60.0)
    for port in ports:
        await registry.register_instance(
            Instance(id=f"p{port}", service="svc", port=port, health=Health.PASSING), lease
        )
    await eventually(lambda: len(directory.instances("svc")) == len(ports))


def answering(statuses: dict[int, int], seen: list[int]) -> httpx.MockTransport:
    """A transport where the instance on port P answers `statuses[P]`; every port called is appended to `seen`."""

    def handle(request: httpx.Request) -> httpx.Response:
        port = request.url.port
        assert port is not None
        seen.append(port)
        return httpx.Response(statuses[port], json={"port": port})

    return httpx.MockTransport(handle)


async def test_retry_budget_stops_retries(registry: Registry, directory: ServiceDirectory) -> None:
    """With no retry budget left, a failed try is not retried and the error says the budget ran out."""
    await register(registry, directory, 1001, 1002)
    seen: list[int] = []
    budget = RetryBudget(budget_percent=0.0, min_retry_concurrency=0)
    transport = answering({1001: 503, 1002: 200}, seen)
    async with Client(directory, "svc", retry=FAST_RETRY, budget=budget, transport=transport) as client:
        try:
            await client.get("/x")
            raise AssertionError("the call should have failed")
        except ServiceCallError as exc:
            assert "retry budget exhausted" in str(exc)
            assert [a.instance for a in exc.attempts] == ["p1001"]
    assert seen == [1001]
    assert budget.denied == 1 and budget.active_requests == 0 and budget.active_retries == 0


async def test_retries_move_to_untried_instances(registry: Registry, directory: ServiceDirectory) -> None:
    """Failover never repeats an instance within one call, and the error lists each try in order."""
    await register(registry, directory, 1001, 1002, 1003)
    seen: list[int] = []
    transport = answering({1001: 500, 1002: 502, 1003: 504}, seen)
    async with Client(directory, "svc", retry=FAST_RETRY, transport=transport) as client:
        try:
            await client.get("/x")
            raise AssertionError("the call should have failed")
        except ServiceCallError as exc:
            assert [(a.instance, a.status) for a in exc.attempts] == [("p1001", 500), ("p1002", 502), ("p1003", 504)]
            assert "failed after 3 tries" in str(exc)
    assert seen == [1001, 1002, 1003]


async def test_failback_queue_is_bounded(registry: Registry, directory: ServiceDirectory) -> None:
    """A full failback queue drops new calls (counted) instead of growing without bound."""
    await register(registry, directory, 1001)
    seen: list[int] = []
    policy = FailbackPolicy(max_queue=2, retry=RetryPolicy(max_attempts=2, base=5.0, cap=5.0))
    transport = answering({1001: 500}, seen)
    async with Client(directory, "svc", strategy=Strategy.FAILBACK, failback=policy, transport=transport) as client:
        for _ in range(3):
            assert is_empty(await client.post("/audit"))
        assert client.failback.pending == 2 and client.failback.dropped == 1
    assert client.failback.pending == 0  # dropped at close, logged


async def test_bulkhead_queues_then_rejects(registry: Registry, directory: ServiceDirectory) -> None:
    """One slot and a queue of one: the second call waits for the slot, the third is refused."""
    await register(registry, directory, 1001)
    gate = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200)

    async with Client(directory, "svc", bulkhead=Bulkhead(1, 1, 5.0), transport=httpx.MockTransport(handle)) as client:
        calls = [asyncio.create_task(client.get(f"/{i}")) for i in range(3)]
        await eventually(lambda: any(c.done() for c in calls))
        gate.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["Response", "Response", "CallRejected"]
