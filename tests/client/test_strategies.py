"""Each cluster strategy of `jishi.client.Client` against real backend processes that fail."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from client_harness import Backend, Cluster, eventually

from jishi.client import CallRejected, Client, FailbackPolicy, ServiceCallError, ServiceDirectory, Strategy, is_empty
from jishi.core.resilience import BreakerConfig, BreakerState, Bulkhead, HedgePolicy, RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=3, base=0.001, cap=0.01)


async def start(cluster: Cluster, directory: ServiceDirectory, n: int) -> list[Backend]:
    backends = await cluster(n)
    await eventually(lambda: len(directory.instances("svc")) == n)
    return backends


async def test_failover_skips_a_killed_instance(cluster: Cluster, directory: ServiceDirectory) -> None:
    """A SIGKILLed instance still in the registry costs callers nothing: failover retries elsewhere."""
    b = await start(cluster, directory, 3)
    b[1].proc.signal(signal.SIGKILL)
    b[1].proc.popen.wait(5)
    async with Client(directory, "svc", retry=FAST_RETRY) as client:
        names = [(await client.get("/whoami")).json()["name"] for _ in range(30)]
    assert set(names) == {"b0", "b2"}
    assert abs(names.count("b0") - names.count("b2")) <= 2


async def test_failfast_raises_after_one_try(cluster: Cluster, directory: ServiceDirectory) -> None:
    """FAILFAST raises on the first failed try, naming that instance and its status, without retrying."""
    b = await start(cluster, directory, 2)
    await b[0].control(mode="error")
    errors: list[ServiceCallError] = []
    async with Client(directory, "svc", strategy=Strategy.FAILFAST) as client:
        for _ in range(4):
            try:
                assert (await client.get("/x")).json()["name"] == "b1"
            except ServiceCallError as exc:
                errors.append(exc)
    assert len(errors) == 2
    for exc in errors:
        assert [(a.instance, a.status) for a in exc.attempts] == [("b0", 500)]
        assert "b0" in str(exc) and "500" in str(exc)
    assert (await b[0].stats())["requests"] == 2


async def test_failsafe_returns_empty(cluster: Cluster, directory: ServiceDirectory) -> None:
    """FAILSAFE answers a failed call with an empty 204 that carries the error, instead of raising."""
    b = await start(cluster, directory, 2)
    for backend in b:
        await backend.control(mode="error")
    async with Client(directory, "svc", strategy="failsafe", retry=FAST_RETRY) as client:
        response = await client.get("/x")
    assert is_empty(response) and response.status_code == 204
    error = response.extensions["jishi_error"]
    assert isinstance(error, ServiceCallError)
    assert {a.instance for a in error.attempts} == {"b0", "b1"}


async def test_failback_retries_in_the_background(cluster: Cluster, directory: ServiceDirectory) -> None:
    """FAILBACK returns empty at once, then retries the call in the background until the instance takes it."""
    (b0,) = await start(cluster, directory, 1)
    await b0.control(fail=3)
    policy = FailbackPolicy(retry=RetryPolicy(max_attempts=10, base=0.02, cap=0.05))
    async with Client(directory, "svc", strategy=Strategy.FAILBACK, failback=policy) as client:
        response = await client.post("/audit", content=b"event-1")
        assert is_empty(response)
        await eventually(lambda: client.failback.succeeded == 1)
        assert client.failback.pending == 0
    stats = await b0.stats()
    assert stats["failed"] == 3 and stats["bodies"] == ["event-1"]


async def test_forking_returns_the_fastest_success(cluster: Cluster, directory: ServiceDirectory) -> None:
    """FORKING calls two instances at once and returns the first success without waiting for the slow one."""
    b = await start(cluster, directory, 2)
    await b[0].control(delay=3)
    async with Client(directory, "svc", strategy=Strategy.FORKING, forks=2) as client:
        started = time.monotonic()
        response = await client.get("/whoami")
        elapsed = time.monotonic() - started
    assert response.json()["name"] == "b1"
    assert elapsed < 1.5
    assert (await b[0].stats())["requests"] == 1  # the slow one was called too


async def test_broadcast_reaches_all_and_reports_a_failure(cluster: Cluster, directory: ServiceDirectory) -> None:
    """BROADCAST calls every instance; one failing instance makes the call raise, naming it."""
    b = await start(cluster, directory, 3)
    async with Client(directory, "svc", strategy=Strategy.BROADCAST) as client:
        responses = await client.broadcast("POST", "/reload", content=b"v1")
        assert sorted(r.json()["name"] for r in responses) == ["b0", "b1", "b2"]
        await b[2].control(mode="error")
        with pytest.raises(ServiceCallError) as caught:
            await client.post("/reload", content=b"v2")
    assert [(a.instance, a.status) for a in caught.value.attempts] == [("b2", 500)]
    assert "1 of 3 instances failed" in str(caught.value)
    for backend in b[:2]:
        assert (await backend.stats())["bodies"] == ["v1", "v2"]


async def test_breaker_opens_and_traffic_moves(cluster: Cluster, directory: ServiceDirectory) -> None:
    """A 500-returning instance trips its breaker after the window fills; then only the others get traffic."""
    b = await start(cluster, directory, 3)
    await b[0].control(mode="error")
    config = BreakerConfig(window_size=4, minimum_calls=4, wait_in_open=0.5, permitted_calls_in_half_open=1)
    async with Client(directory, "svc", breaker=config, retry=FAST_RETRY) as client:
        for _ in range(30):
            assert (await client.get("/x")).status_code == 200  # failover hides the failures
        assert client.peers.breakers["b0"].state is BreakerState.OPEN
        assert (await b[0].stats())["requests"] == 4
        await b[0].control(mode="ok")
        await asyncio.sleep(0.6)
        names = [(await client.get("/whoami")).json()["name"] for _ in range(9)]
        assert "b0" in names  # the probe went through half-open and closed the breaker
        assert client.peers.breakers["b0"].state is BreakerState.CLOSED


async def test_hedge_goes_to_another_instance_when_the_first_hangs(
    cluster: Cluster, directory: ServiceDirectory
) -> None:
    """With a hedge delay, a try that hangs gets a second try elsewhere after the delay; that one answers."""
    b = await start(cluster, directory, 2)
    await b[0].control(mode="hang")
    async with Client(directory, "svc", hedge=HedgePolicy(delay=0.1), retry=None, timeout=10) as client:
        started = time.monotonic()
        response = await client.get("/whoami")  # the first pick is b0 (equal weights, ties to the first)
        elapsed = time.monotonic() - started
    assert response.json()["name"] == "b1"
    assert 0.1 <= elapsed < 2.0
    assert (await b[0].stats())["requests"] == 1


async def test_post_is_not_retried_after_a_500(cluster: Cluster, directory: ServiceDirectory) -> None:
    """A non-idempotent call that reached an instance is not repeated elsewhere (it may have taken effect)."""
    b = await start(cluster, directory, 2)
    await b[0].control(mode="error")
    async with Client(directory, "svc", retry=FAST_RETRY) as client:
        with pytest.raises(ServiceCallError, match="not idempotent"):
            await client.post("/orders", content=b"o1")
        assert (await client.post("/orders", content=b"o2", idempotent=True)).json()["name"] == "b1"
    assert (await b[1].stats())["bodies"] == ["o2"]


async def test_bulkhead_rejects_beyond_its_limit(cluster: Cluster, directory: ServiceDirectory) -> None:
    """With one slot and no queue, a second concurrent call is refused with CallRejected."""
    (b0,) = await start(cluster, directory, 1)
    await b0.control(delay=0.5)
    async with Client(directory, "svc", bulkhead=Bulkhead(1)) as client:
        results = await asyncio.gather(client.get("/a"), client.get("/b"), return_exceptions=True)
    assert sum(isinstance(r, CallRejected) for r in results) == 1
    assert sum(not isinstance(r, BaseException) and r.status_code == 200 for r in results) == 1
