"""Test harness for the agent: an in-memory control plane, a spec for the tiny test service, an in-process
agent runner, and polling helpers."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from jishi.agent import Agent
from jishi.errors import LeaseNotFoundError, NotFoundError
from jishi.registry.model import (
    SERVICES,
    AgentInfo,
    GatewayInfo,
    Health,
    Instance,
    Route,
    ServiceSpec,
    service_key,
)
from jishi.registry.protocol import ControlPlane
from jishi.store import Event, EventType, KeyValue

SERVICE = str(Path(__file__).with_name("service.py"))


class FakeControlPlane:
    """An in-memory ControlPlane with just what the agent uses: services (watchable), leases, instances."""

    def __init__(self) -> None:
        self.revision = 1
        self.services: dict[str, ServiceSpec] = {}
        self.instances: dict[tuple[str, str], tuple[Instance, int]] = {}
        self.leases: set[int] = set()
        self.agents: dict[str, AgentInfo] = {}
        self._ids = itertools.count(100)
        self._watchers: list[asyncio.Queue[Event]] = []
        self.down = False  # True: every call fails as if unreachable

    def _check(self) -> None:
        if self.down:
            raise OSError("control plane unreachable (test)")

    async def snapshot(self, prefix: str) -> tuple[int, list[KeyValue]]:
        self._check()
        assert prefix == SERVICES
        kvs = [self._kv(spec) for spec in self.services.values()]
        return self.revision, kvs

    def _kv(self, spec: ServiceSpec) -> KeyValue:
        return KeyValue(service_key(spec.name).encode(), spec.model_dump_json().encode(), 1, self.revision, 1)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(queue)

    async def grant_lease(self, ttl: float) -> int:
        self._check()
        lease = next(self._ids)
        self.leases.add(lease)
        return lease

    async def keepalive(self, lease_id: int) -> float:
        self._check()
        if lease_id not in self.leases:
            raise LeaseNotFoundError(lease_id)
        return 3.0

    async def revoke_lease(self, lease_id: int) -> None:
        self._check()
        self.expire(lease_id)

    def expire(self, lease_id: int) -> None:
        self.leases.discard(lease_id)
        for key, (_, lease) in list(self.instances.items()):
            if lease == lease_id:
                del self.instances[key]

    async def register_instance(self, instance: Instance, lease_id: int) -> None:
        self._check()
        if lease_id not in self.leases:
            raise LeaseNotFoundError(lease_id)
        self.instances[(instance.service, instance.id)] = (instance, lease_id)

    async def set_health(self, service: str, instance_id: str, health: Health, output: str = "") -> Instance:
        return self._update(service, instance_id, health=health, health_output=output)

    async def set_draining(self, service: str, instance_id: str) -> Instance:
        return self._update(service, instance_id, draining=True)

    def _update(self, service: str, instance_id: str, **changes: object) -> Instance:
        self._check()
        if (service, instance_id) not in self.instances:
            raise NotFoundError(f"no instance {service}/{instance_id}")
        old, lease = self.instances[(service, instance_id)]
        new = old.model_copy(update=changes)
        self.instances[(service, instance_id)] = (new, lease)
        return new

    async def deregister_instance(self, service: str, instance_id: str) -> None:
        self._check()
        if self.instances.pop((service, instance_id), None) is None:
            raise NotFoundError(f"no instance {service}/{instance_id}")

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        return [i for (s, _), (i, _) in sorted(self.instances.items()) if service in (None, s)]

    async def list_services(self) -> list[ServiceSpec]:
        return list(self.services.values())

    async def get_service(self, name: str) -> ServiceSpec:
        return self.services[name]

    async def put_service(self, spec: ServiceSpec) -> None:
        self.revision += 1
        self.services[spec.name] = spec
        self._emit(Event(EventType.PUT, self._kv(spec)))

    async def delete_service(self, name: str) -> None:
        self.revision += 1
        self.services.pop(name)
        kv = KeyValue(service_key(name).encode(), b"", 0, self.revision, 0)
        self._emit(Event(EventType.DELETE, kv))

    async def scale(self, name: str, instances: int) -> ServiceSpec:
        spec = self.services[name].model_copy(update={"instances": instances})
        await self.put_service(spec)
        return spec

    def _emit(self, event: Event) -> None:
        for queue in self._watchers:
            queue.put_nowait(event)

    async def register_agent(self, info: AgentInfo, lease_id: int) -> None:
        self._check()
        if lease_id not in self.leases:
            raise LeaseNotFoundError(lease_id)
        self.agents[info.id] = info

    async def list_agents(self) -> list[AgentInfo]:
        return list(self.agents.values())

    async def list_routes(self) -> list[Route]:
        return []

    async def put_route(self, route: Route) -> None:
        raise NotImplementedError

    async def delete_route(self, name: str) -> None:
        raise NotImplementedError

    async def apply(self, services: Sequence[ServiceSpec], routes: Sequence[Route]) -> int:
        raise NotImplementedError

    async def register_gateway(self, info: GatewayInfo, lease_id: int) -> None:
        raise NotImplementedError

    async def list_gateways(self) -> list[GatewayInfo]:
        return []

    async def kv_get(self, key: str, *, prefix: bool = False) -> list[KeyValue]:
        raise NotImplementedError

    async def kv_put(self, key: str, value: str) -> int:
        raise NotImplementedError

    async def kv_delete(self, key: str, *, prefix: bool = False) -> int:
        raise NotImplementedError


def service_spec(name: str = "web", instances: int = 1, **overrides: object) -> ServiceSpec:
    """A spec that runs tests/agent/service.py with quick checks and short stop timeouts."""
    fields: dict[str, object] = {
        "name": name,
        "command": [sys.executable, SERVICE, "{port}"],
        "instances": instances,
        "health_check": {"type": "http", "path": "/healthz", "interval": 0.2, "timeout": 0.5, "rise": 1, "fall": 1},
        "restart": {"initial_delay": 0.1, "max_delay": 2.0, "multiplier": 2.0, "reset_after": 5.0, "jitter": 0.0},
        "drain_seconds": 0.1,
        "stop_timeout": 2.0,
    }
    fields.update(overrides)
    return ServiceSpec.model_validate(fields)


@asynccontextmanager
async def running_agent(cp: ControlPlane, data_dir: Path, agent_id: str = "test-agent") -> AsyncIterator[Agent]:
    """An agent running in this event loop; stopped gracefully (and awaited) on exit."""
    agent = Agent(cp, data_dir, agent_id)
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        agent.stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            for sup in agent.slots.values():  # only if the graceful stop failed
                if sup.pid is not None:
                    os.killpg(sup.pid, 9)


async def eventually(predicate: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = "") -> float:
    """Poll the async predicate every 10 ms until true; returns the seconds it took. AssertionError on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {within} s: {what or predicate}")


async def passing(cp: ControlPlane, service: str) -> list[Instance]:
    return [i for i in await cp.list_instances(service) if i.health is Health.PASSING and not i.draining]


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
