"""`Registry`: the control plane's domain on a `Store` — services, instances, routes, members and user KV.

    registry = Registry(store)
    lease = await registry.grant_lease(3.0)
    await registry.register_instance(instance, lease)
    await registry.set_health("web", instance.id, Health.PASSING)

Every record is the JSON of its pydantic model at the key `jishi.registry.model` documents. Rules:
- instances, gateways and agents are attached to a lease: when it ends, the store deletes them (and watchers
  see the DELETE). Registering under a lease that is gone raises `LeaseNotFoundError`.
- `set_health` / `set_draining` / `scale` are read-modify-write with a txn that compares the key's
  mod_revision and retries on conflict, so concurrent updates never lose one another; the key keeps its lease.
  `health_since` moves only when the health value changes. An update that changes nothing writes nothing.
- `apply` writes every service and route in ONE txn and deletes those not named; unchanged records are not
  rewritten, so followers see only real changes.
- `reap(now)` deletes instances past their deregistration deadline (`jishi.core.deregister`), each guarded by
  its mod_revision so an instance that recovered in the meantime stays.
- events, restart requests, alerting settings and silences are `jishi.registry.operations` (a mixin). `scale`
  records a `service.scaled` event when the count changed; `apply` records `config.applied` (the services and
  routes added, changed and removed) in the same txn as the change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from jishi.core import deregister
from jishi.errors import LeaseNotFoundError, NotFoundError, StoreError
from jishi.registry import model as m
from jishi.registry.events import EventIds, EventIndex
from jishi.registry.model import AgentInfo, EventRecord, GatewayInfo, Health, Instance, Route, ServiceSpec
from jishi.registry.operations import Operations
from jishi.store import Compare, CompareOp, CompareTarget, Delete, Event, KeyValue, Op, Put, Store

if TYPE_CHECKING:
    from jishi.registry.protocol import ControlPlane

__all__ = ["ClusterStatus", "Registry"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
MAX_CONFLICT_RETRIES = 100  # a read-modify-write that loses this many races in a row is a bug, not contention


class ClusterStatus(BaseModel):
    """Everything a `jishi status` shows, read at one revision."""

    revision: int
    services: list[ServiceSpec]
    instances: list[Instance]
    routes: list[Route]
    gateways: list[GatewayInfo]
    agents: list[AgentInfo]


def _decode(cls: type[M], kv: KeyValue) -> M:
    try:
        return cls.model_validate_json(kv.value)
    except ValidationError as exc:
        raise StoreError(f"the record at {kv.key.decode()} is not a valid {cls.__name__}: {exc}") from exc


def _encode(record: BaseModel) -> bytes:
    return record.model_dump_json().encode()


class Registry(Operations):
    """The `ControlPlane` protocol implemented in-process on a `Store`. `wall` stamps `health_since` and events."""

    def __init__(self, store: Store, *, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self._wall = wall
        self._event_ids = EventIds()
        self.event_index: EventIndex | None = None  # set (and run) by the server: queries answered from memory

    # ---- raw reads and watches ------------------------------------------------------------------------

    async def snapshot(self, prefix: str) -> tuple[int, list[KeyValue]]:
        result = await self.store.get(prefix.encode(), prefix=True)
        return result.revision, result.kvs

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        return self.store.watch(prefix.encode(), prefix=True, start_revision=start_revision)

    async def revision(self) -> int:
        return await self.store.revision()

    async def status(self) -> ClusterStatus:
        """Services, instances, routes and members, all read at one revision."""
        revision, kvs = await self.snapshot(m.PREFIX)
        groups: dict[str, list[KeyValue]] = {}
        for kv in kvs:
            for prefix in (m.SERVICES, m.INSTANCES, m.ROUTES, m.GATEWAYS, m.AGENTS):
                if kv.key.startswith(prefix.encode()):
                    groups.setdefault(prefix, []).append(kv)
        return ClusterStatus(
            revision=revision,
            services=[_decode(ServiceSpec, kv) for kv in groups.get(m.SERVICES, [])],
            instances=[_decode(Instance, kv) for kv in groups.get(m.INSTANCES, [])],
            routes=[_decode(Route, kv) for kv in groups.get(m.ROUTES, [])],
            gateways=[_decode(GatewayInfo, kv) for kv in groups.get(m.GATEWAYS, [])],
            agents=[_decode(AgentInfo, kv) for kv in groups.get(m.AGENTS, [])],
        )

    # ---- leases ---------------------------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        return (await self.store.grant(ttl)).id

    async def keepalive(self, lease_id: int) -> float:
        return (await self.store.keepalive(lease_id)).ttl

    async def revoke_lease(self, lease_id: int) -> None:
        await self.store.revoke(lease_id)

    # ---- instances ------------------------------------------------------------------------------------

    async def register_instance(self, instance: Instance, lease_id: int) -> None:
        """Put the instance under its lease. A zero `health_since` is stamped with the current wall time."""
        if lease_id <= 0:
            raise LeaseNotFoundError(lease_id)
        if instance.health_since <= 0:
            instance = instance.model_copy(update={"health_since": self._wall()})
        await self.store.put(instance.key.encode(), _encode(instance), lease=lease_id)

    async def set_health(self, service: str, instance_id: str, health: Health, output: str = "") -> Instance:
        def change(inst: Instance) -> Instance:
            update: dict[str, object] = {"health": health, "health_output": output}
            if inst.health != health:
                update["health_since"] = self._wall()
            return inst.model_copy(update=update)

        return await self._update(m.instance_key(service, instance_id), Instance, change, f"instance {instance_id}")

    async def set_draining(self, service: str, instance_id: str) -> Instance:
        return await self._update(
            m.instance_key(service, instance_id),
            Instance,
            lambda inst: inst.model_copy(update={"draining": True}),
            f"instance {instance_id}",
        )

    async def deregister_instance(self, service: str, instance_id: str) -> None:
        result = await self.store.delete(m.instance_key(service, instance_id).encode())
        if result.deleted == 0:
            raise NotFoundError(f"instance {instance_id} of service {service!r} is not registered")

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        prefix = f"{m.INSTANCES}{service}/" if service else m.INSTANCES
        return await self._list(prefix, Instance)

    async def reap(self, now: float | None = None) -> list[Instance]:
        """Delete every instance past its deregistration deadline at `now` (default: the wall clock)."""
        now = self._wall() if now is None else now
        result = await self.store.get(m.INSTANCES.encode(), prefix=True)
        by_key = {kv.key: kv for kv in result.kvs}
        instances = [_decode(Instance, kv) for kv in result.kvs]
        removed = []
        for inst in deregister.due(instances, now):
            kv = by_key[inst.key.encode()]
            guard = Compare(kv.key, CompareTarget.MOD, CompareOp.EQUAL, kv.mod_revision)
            txn = await self.store.txn([guard], [Delete(kv.key)])
            if txn.succeeded:
                log.info(
                    "deregistered %s: critical since %.3f, deadline %.1f s",
                    inst.key,
                    inst.health_since,
                    inst.deregister_critical_after or 0.0,
                )
                removed.append(inst)
        return removed

    # ---- services -------------------------------------------------------------------------------------

    async def list_services(self) -> list[ServiceSpec]:
        return await self._list(m.SERVICES, ServiceSpec)

    async def get_service(self, name: str) -> ServiceSpec:
        return await self._get(m.service_key(name), ServiceSpec, f"service {name!r}")

    async def put_service(self, spec: ServiceSpec) -> None:
        await self.store.put(m.service_key(spec.name).encode(), _encode(spec))

    async def delete_service(self, name: str) -> None:
        if (await self.store.delete(m.service_key(name).encode())).deleted == 0:
            raise NotFoundError(f"service {name!r} does not exist")

    async def scale(self, name: str, instances: int) -> ServiceSpec:
        before: list[int] = []

        def change(spec: ServiceSpec) -> ServiceSpec:
            before[:] = [spec.instances]
            return ServiceSpec.model_validate({**spec.model_dump(), "instances": instances})

        spec = await self._update(m.service_key(name), ServiceSpec, change, f"service {name!r}")
        if before and before[0] != spec.instances:
            event = EventRecord(
                time=self._wall(),
                kind="service.scaled",
                subject=name,
                reason=f"scaled from {before[0]} to {spec.instances} instances",
                labels={"service": name, "from": str(before[0]), "to": str(spec.instances)},
            )
            await self.record_event(event)
        return spec

    # ---- routes ---------------------------------------------------------------------------------------

    async def list_routes(self) -> list[Route]:
        return await self._list(m.ROUTES, Route)

    async def get_route(self, name: str) -> Route:
        return await self._get(m.route_key(name), Route, f"route {name!r}")

    async def put_route(self, route: Route) -> None:
        await self.store.put(m.route_key(route.name).encode(), _encode(route))

    async def delete_route(self, name: str) -> None:
        if (await self.store.delete(m.route_key(name).encode())).deleted == 0:
            raise NotFoundError(f"route {name!r} does not exist")

    # ---- declarative apply ----------------------------------------------------------------------------

    async def apply(self, services: Sequence[ServiceSpec], routes: Sequence[Route]) -> int:
        """Make the services and routes exactly these, in one txn; returns the revision after it."""
        for kind, names in (("service", [s.name for s in services]), ("route", [r.name for r in routes])):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(duplicates)}")
        wanted = {m.service_key(s.name).encode(): _encode(s) for s in services}
        wanted |= {m.route_key(r.name).encode(): _encode(r) for r in routes}
        current: dict[bytes, KeyValue] = {}
        for prefix in (m.SERVICES, m.ROUTES):
            current |= {kv.key: kv for kv in (await self.store.get(prefix.encode(), prefix=True)).kvs}
        ops: list[Op] = [Delete(key) for key in current if key not in wanted]
        ops += [Put(key, value) for key, value in wanted.items() if key not in current or current[key].value != value]
        if not ops:
            return await self.store.revision()
        applied, put = self._event_put(_applied_event(ops, current.keys(), self._wall()))
        result = await self.store.txn([], [*ops, put])
        self._indexed(applied)
        log.info(
            "applied %d services and %d routes (%d changes) at revision %d",
            len(services),
            len(routes),
            len(ops),
            result.revision,
        )
        return result.revision

    # ---- members --------------------------------------------------------------------------------------

    async def register_gateway(self, info: GatewayInfo, lease_id: int) -> None:
        await self.store.put((m.GATEWAYS + info.id).encode(), _encode(info), lease=lease_id)

    async def list_gateways(self) -> list[GatewayInfo]:
        return await self._list(m.GATEWAYS, GatewayInfo)

    async def register_agent(self, info: AgentInfo, lease_id: int) -> None:
        await self.store.put((m.AGENTS + info.id).encode(), _encode(info), lease=lease_id)

    async def list_agents(self) -> list[AgentInfo]:
        return await self._list(m.AGENTS, AgentInfo)

    # Where gateway reports go once their events are stored (the server's `jishi.server.stats.StatsBoard`).
    report_sink: Callable[[str, dict[str, Any]], None] | None = None

    async def report_gateway(self, gateway_id: str, report: dict[str, Any]) -> None:
        """Store the events of a gateway's report (`record_events`: one txn), then hand the report to
        `report_sink`."""
        events = []
        for raw in report.get("events") or ():
            try:
                events.append(m.EventRecord.model_validate(raw))
            except ValidationError as exc:
                log.warning("gateway %s reported an invalid event (not stored): %s", gateway_id, exc)
        await self.record_events(events)
        if self.report_sink is not None:
            self.report_sink(gateway_id, report)

    # ---- user KV (keys relative to /jishi/kv/; returned KeyValues carry relative keys too) --------------

    async def kv_get(self, key: str, *, prefix: bool = False) -> list[KeyValue]:
        return (await self.kv_range(key, prefix=prefix))[1]

    async def kv_range(self, key: str, *, prefix: bool = False) -> tuple[int, list[KeyValue]]:
        """`kv_get` with the store revision the keys were read at — from the same read, so a watch from that
        revision + 1 sees exactly the changes made after these values."""
        result = await self.store.get((m.KV + key).encode(), prefix=prefix)
        cut = len(m.KV.encode())
        return result.revision, [
            KeyValue(kv.key[cut:], kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
            for kv in result.kvs
        ]

    async def kv_put(self, key: str, value: str) -> int:
        if not key:
            raise ValueError("a KV key must not be empty")
        return (await self.store.put((m.KV + key).encode(), value.encode())).revision

    async def kv_delete(self, key: str, *, prefix: bool = False) -> int:
        return (await self.store.delete((m.KV + key).encode(), prefix=prefix)).deleted

    # ---- helpers --------------------------------------------------------------------------------------

    async def _list(self, prefix: str, cls: type[M]) -> list[M]:
        return [_decode(cls, kv) for kv in (await self.store.get(prefix.encode(), prefix=True)).kvs]

    async def _get(self, key: str, cls: type[M], what: str) -> M:
        kvs = (await self.store.get(key.encode())).kvs
        if not kvs:
            raise NotFoundError(f"{what} does not exist")
        return _decode(cls, kvs[0])

    async def _update(self, key: str, cls: type[M], change: Callable[[M], M], what: str) -> M:
        """Read-modify-write of one record, guarded by its mod_revision and retried on conflict."""
        raw = key.encode()
        for _ in range(MAX_CONFLICT_RETRIES):
            kvs = (await self.store.get(raw)).kvs
            if not kvs:
                raise NotFoundError(f"{what} does not exist")
            old = _decode(cls, kvs[0])
            new = change(old)
            if new == old:
                return old
            guard = Compare(raw, CompareTarget.MOD, CompareOp.EQUAL, kvs[0].mod_revision)
            if (await self.store.txn([guard], [Put(raw, _encode(new), lease=kvs[0].lease)])).succeeded:
                return new
        raise StoreError(f"could not update {what}: it kept changing under {MAX_CONFLICT_RETRIES} attempts")


def _applied_event(ops: Sequence[Op], existing: Collection[bytes], now: float) -> EventRecord:
    """The `config.applied` event of an apply's writes: which services and routes were added, changed, removed."""
    changed: dict[str, list[str]] = {}
    for op in ops:
        key = op.key.decode()
        for prefix, what in ((m.SERVICES, "services"), (m.ROUTES, "routes")):
            if key.startswith(prefix):
                how = "removed" if not isinstance(op, Put) else "changed" if op.key in existing else "added"
                changed.setdefault(f"{how} {what}", []).append(key[len(prefix) :])
    order = [f"{how} {what}" for how in ("added", "changed", "removed") for what in ("services", "routes")]
    parts = [f"{what}: {', '.join(sorted(changed[what]))}" for what in order if what in changed]
    labels = {what.replace(" ", "_"): ",".join(sorted(changed[what])) for what in order if what in changed}
    return EventRecord(time=now, kind="config.applied", subject="config", reason="; ".join(parts), labels=labels)


if TYPE_CHECKING:  # mypy checks that Registry satisfies the protocol

    def _conforms(registry: Registry) -> ControlPlane:
        return registry
