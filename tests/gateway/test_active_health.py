"""Active health checks from the gateway take an instance out of a route and put it back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from gateway_harness import GatewayUnderTest
from lb_harness import instance, start_faulty

from jishi.registry.model import Route
from jishi.testing import ProcessGroup


def route(**sections: Any) -> Route:
    return Route.model_validate({"name": "svc", "backends": [{"service": "svc"}], **sections})


async def names(gateway: GatewayUnderTest, n: int) -> set[str]:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        return {(await client.get("/whoami")).json()["name"] for _ in range(n)}


async def test_instance_failing_its_health_path_leaves_the_route_and_comes_back(
    gateway: GatewayUnderTest, procs: ProcessGroup, tmp_path: Path
) -> None:
    """An instance that still serves but answers 500 on /healthz is out after `fall` checks (an event says so)
    and back after `rise` passes once its health path recovers."""
    sick_flag = tmp_path / "sick"
    sick_flag.touch()
    sick, well = start_faulty(procs, "sick", f"sick:{sick_flag}"), start_faulty(procs, "well")
    check = {"path": "/healthz", "interval": "100ms", "timeout": "500ms", "fall": 2, "rise": 2}
    gateway.set([route(health_check=check)], [instance(sick), instance(well)])
    entry = gateway.proxy.table.routes["svc"]
    await wait_until_async(lambda: entry.ejected() == ["svc/sick"])
    assert await names(gateway, 6) == {"well"}
    (event,) = [e for e in gateway.proxy.events if e.kind == "instance.ejected"]
    assert event.subject == "svc/sick" and "500" in event.reason and event.labels["reason"] == "health_check"
    sick_flag.unlink()
    await wait_until_async(lambda: entry.ejected() == [])
    assert await names(gateway, 6) == {"sick", "well"}
    assert [e.kind for e in gateway.proxy.events] == ["instance.ejected", "instance.restored"]


async def test_tcp_check_takes_out_an_instance_that_stopped_listening(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """type tcp: a refused connection counts as a failed check; the checks stop when the section goes away."""
    gone, well = start_faulty(procs, "gone"), start_faulty(procs, "well")
    check = {"type": "tcp", "interval": "100ms", "timeout": "500ms", "fall": 1, "rise": 1}
    gateway.set([route(health_check=check)], [instance(gone), instance(well)])
    gone.proc.stop()
    entry = gateway.proxy.table.routes["svc"]
    await wait_until_async(lambda: entry.ejected() == ["svc/gone"])
    assert len(gateway.proxy.health._tasks) == 1
    gateway.set([route()], [instance(well)])
    await wait_until_async(lambda: not gateway.proxy.health._tasks and not gateway.proxy.health._ending)


async def test_wait_for_pass_keeps_a_new_instance_out_until_a_check_passes(
    gateway: GatewayUnderTest, procs: ProcessGroup, tmp_path: Path
) -> None:
    """wait_for_pass: an instance added to a route whose health path fails gets no request (even with an interval
    of a minute, it is checked as soon as it appears); once its path passes it takes traffic, and an
    `instance.admitted` event says so."""
    sick_flag = tmp_path / "sick"
    sick_flag.touch()
    well, late = start_faulty(procs, "well"), start_faulty(procs, "late", f"sick:{sick_flag}")
    slow = {"path": "/healthz", "interval": "60s", "timeout": "500ms", "fall": 1, "rise": 1, "wait_for_pass": True}
    gateway.set([route(health_check=slow)], [instance(well)])
    gateway.set([route(health_check=slow)], [instance(well), instance(late)])
    entry = gateway.proxy.table.routes["svc"]
    assert entry.ejected() == ["svc/late"]
    assert await names(gateway, 8) == {"well"}
    fast = {**slow, "interval": "100ms"}
    gateway.set([route(health_check=fast)], [instance(well), instance(late)])  # (a changed section: new checker)
    entry = gateway.proxy.table.routes["svc"]
    await asyncio.sleep(0.3)
    assert entry.ejected() == ["svc/late"] and await names(gateway, 8) == {"well"}  # failing checks keep it out
    sick_flag.unlink()
    await wait_until_async(lambda: entry.ejected() == [])
    assert await names(gateway, 8) == {"well", "late"}
    (event,) = [e for e in gateway.proxy.events if e.kind == "instance.admitted"]
    assert event.subject == "svc/late" and event.labels["reason"] == "health_check"


async def test_wait_for_pass_checks_a_new_instance_at_once(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """A table that brings a new instance to a route with wait_for_pass starts a round then, not at the route's
    next interval (a minute here): the healthy newcomer takes traffic within a second."""
    well, late = start_faulty(procs, "well"), start_faulty(procs, "late")
    check = {"path": "/healthz", "interval": "60s", "timeout": "500ms", "wait_for_pass": True}
    gateway.set([route(health_check=check)], [instance(well)])
    await asyncio.sleep(0.2)  # the first round (of the first table) is over
    gateway.set([route(health_check=check)], [instance(well), instance(late)])
    entry = gateway.proxy.table.routes["svc"]
    await wait_until_async(lambda: entry.ejected() == [])
    assert await names(gateway, 8) == {"well", "late"}


async def wait_until_async(predicate: Any) -> None:
    """Wait on the running loop (the gateway runs on it) until `predicate()` holds, for up to 5 s."""
    for _ in range(250):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met within 5 s")
