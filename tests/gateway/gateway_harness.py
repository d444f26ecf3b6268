"""Helpers for gateway tests: real backend processes and an in-process proxy fed a routing table."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jishi.core.routing import RoutingTable
from jishi.gateway.proxy import Proxy
from jishi.registry.model import Health, Instance, Route, RouteBackend
from jishi.testing import ManagedProcess, ProcessGroup, free_port, wait_for_port

BACKEND = str(Path(__file__).with_name("backend.py"))


@dataclass
class Backend:
    name: str
    port: int
    proc: ManagedProcess

    def instance(self, service: str = "svc", **kw: object) -> Instance:
        return Instance(id=self.name, service=service, port=self.port, health=Health.PASSING, **kw)  # type: ignore[arg-type]


def start_backend(procs: ProcessGroup, name: str, port: int | None = None) -> Backend:
    port = port or free_port()
    proc = procs.start(name, [sys.executable, BACKEND, str(port), name])
    wait_for_port(port)
    return Backend(name, port, proc)


@pytest.fixture
def backends(procs: ProcessGroup) -> Callable[[int], list[Backend]]:
    """`backends(n)` starts n test backends named b0…b{n-1}."""

    def make(n: int) -> list[Backend]:
        return [start_backend(procs, f"b{i}") for i in range(n)]

    return make


@dataclass
class GatewayUnderTest:
    proxy: Proxy
    port: int
    routes: list[Route] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, routes: list[Route], instances: list[Instance]) -> None:
        self.routes, self.instances = routes, instances
        self.proxy.set_table(RoutingTable.build(routes, instances, previous=self.proxy.table))


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayUnderTest]:
    """An in-process proxy on an ephemeral port with an empty table (fill it with `gateway.set`)."""
    proxy = Proxy()
    port = await proxy.start("127.0.0.1", 0)
    try:
        yield GatewayUnderTest(proxy, port)
    finally:
        await proxy.stop(grace=1.0)


def simple_route(name: str = "svc", prefix: str = "/", **kw: object) -> Route:
    return Route(name=name, prefix=prefix, backends=[RouteBackend(service=kw.pop("service", name))], **kw)  # type: ignore[arg-type]
