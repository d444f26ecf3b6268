"""Passive outlier detection in the gateway: an instance answering 5xx is ejected, then returns on time."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from gateway_harness import GatewayUnderTest
from lb_harness import instance, start_faulty

from jishi.registry.model import Route
from jishi.testing import ProcessGroup


def route(**sections: Any) -> Route:
    return Route.model_validate({"name": "svc", "backends": [{"service": "svc"}], **sections})


async def test_consecutive_5xx_eject_an_instance_for_the_ejection_time(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """3 consecutive 500s eject the instance (its share goes to the other; an event names it); after the 0.4 s
    ejection time it is back in rotation and an instance.restored event follows."""
    bad, good = start_faulty(procs, "bad", "500"), start_faulty(procs, "good")
    outlier = {"consecutive_5xx": 3, "base_ejection_time": "400ms", "max_ejection_percent": 50}
    gateway.set([route(outlier=outlier)], [instance(bad), instance(good)])
    entry = gateway.proxy.table.routes["svc"]
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        first = [(await client.get("/whoami")).status_code for _ in range(6)]
        assert first == [500, 200] * 3
        assert entry.ejected() == ["svc/bad"]
        assert [(await client.get("/whoami")).status_code for _ in range(6)] == [200] * 6
        await asyncio.sleep(0.5)
        assert entry.ejected() == []
        assert sorted([(await client.get("/whoami")).status_code for _ in range(2)]) == [200, 500]
    kinds = [(e.kind, e.subject) for e in gateway.proxy.events]
    assert kinds == [("instance.ejected", "svc/bad"), ("instance.restored", "svc/bad")]
    assert "ejected for 0.4 s" in gateway.proxy.events[0].reason


async def test_consecutive_gateway_errors_eject_an_instance_that_refuses_connections(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """consecutive_gateway_errors: refused connects count as gateway errors (retried meanwhile) and eject."""
    gone, good = start_faulty(procs, "gone"), start_faulty(procs, "good")
    outlier = {"consecutive_5xx": 0, "consecutive_gateway_errors": 1, "max_ejection_percent": 50}
    gateway.set([route(outlier=outlier)], [instance(gone), instance(good)])
    gone.proc.stop()
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert [(await client.get("/whoami")).status_code for _ in range(4)] == [200] * 4
    assert gateway.proxy.table.routes["svc"].ejected() == ["svc/gone"]
