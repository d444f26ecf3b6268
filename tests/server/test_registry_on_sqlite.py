"""`Registry` on a real SqliteStore: records, leases, health updates, apply, KV and the deregistration reaper."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from jishi.errors import LeaseNotFoundError, NotFoundError
from jishi.registry import AgentInfo, GatewayInfo, Health, Instance, Registry, Route, RouteBackend, ServiceSpec
from jishi.store import EventType
from jishi.store.sqlite import SqliteStore
from jishi.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "state.db", clock=clock, synchronous="NORMAL")
    yield store
    await store.close()


@pytest.fixture
def registry(store: SqliteStore, clock: FakeClock) -> Registry:
    return Registry(store, wall=clock)


async def elapse(store: SqliteStore, clock: FakeClock, seconds: float) -> None:
    """Let `seconds` pass as they do for a running store: an expiry pass every 0.1 s (a longer gap is a stall)."""
    end = clock.now + seconds
    while clock.now < end:
        clock.set(min(end, clock.now + 0.1))
        await store.expire_due()


def _svc(name: str, instances: int = 1) -> ServiceSpec:
    return ServiceSpec(name=name, command=["python", "-m", "http.server", "{port}"], instances=instances)


def _route(name: str, service: str) -> Route:
    return Route(name=name, prefix=f"/api/{service}", backends=[RouteBackend(service=service)])


def _inst(iid: str, service: str = "web", **kw: object) -> Instance:
    return Instance(id=iid, service=service, port=9000, **kw)  # type: ignore[arg-type]


async def test_register_instance_needs_a_live_lease(registry: Registry) -> None:
    """Registering under an unknown or revoked lease raises LeaseNotFoundError; a live one works."""
    with pytest.raises(LeaseNotFoundError):
        await registry.register_instance(_inst("a"), 12345)
    lease = await registry.grant_lease(5.0)
    await registry.revoke_lease(lease)
    with pytest.raises(LeaseNotFoundError):
        await registry.register_instance(_inst("a"), lease)
    lease = await registry.grant_lease(5.0)
    await registry.register_instance(_inst("a"), lease)
    assert [i.id for i in await registry.list_instances("web")] == ["a"]


async def test_register_stamps_health_since_when_unset(registry: Registry, clock: FakeClock) -> None:
    """An instance registered with health_since 0 gets the registry's wall time; a set value is kept."""
    lease = await registry.grant_lease(5.0)
    await registry.register_instance(_inst("a"), lease)
    await registry.register_instance(_inst("b", health_since=7.0), lease)
    by_id = {i.id: i for i in await registry.list_instances()}
    assert by_id["a"].health_since == 1000.0
    assert by_id["b"].health_since == 7.0


async def test_lease_expiry_removes_the_instance_and_the_watch_sees_delete(
    registry: Registry, store: SqliteStore, clock: FakeClock
) -> None:
    """When the instance's lease runs out, the instance key is deleted and a watcher gets the DELETE."""
    lease = await registry.grant_lease(3.0)
    await registry.register_instance(_inst("a"), lease)
    start = await registry.revision() + 1
    await elapse(store, clock, 3.0)
    assert await registry.list_instances() == []
    events = registry.watch("/jishi/instances/", start)
    first = await asyncio.wait_for(anext(events), 5)
    await events.aclose()  # type: ignore[attr-defined]
    assert first.type is EventType.DELETE and first.kv.key == b"/jishi/instances/web/a"


async def test_set_health_moves_health_since_only_on_change_and_keeps_the_lease(
    registry: Registry, store: SqliteStore, clock: FakeClock
) -> None:
    """health_since follows health changes, not repeated reports; the record stays attached to its lease."""
    lease = await registry.grant_lease(5.0)
    await registry.register_instance(_inst("a"), lease)
    clock.advance(2.0)
    inst = await registry.set_health("web", "a", Health.PASSING, "200 OK")
    assert (inst.health, inst.health_since, inst.health_output) == (Health.PASSING, 1002.0, "200 OK")
    rev = await registry.revision()
    clock.advance(1.0)
    same = await registry.set_health("web", "a", Health.PASSING, "200 OK")
    assert same.health_since == 1002.0 and await registry.revision() == rev  # nothing changed, nothing written
    kv = (await store.get(b"/jishi/instances/web/a")).kvs[0]
    assert kv.lease == lease


async def test_concurrent_updates_do_not_lose_writes(registry: Registry) -> None:
    """set_health and set_draining racing on one instance both end up in the record."""
    lease = await registry.grant_lease(5.0)
    await registry.register_instance(_inst("a"), lease)
    await asyncio.gather(registry.set_health("web", "a", Health.WARNING, "slow"), registry.set_draining("web", "a"))
    (inst,) = await registry.list_instances("web")
    assert inst.health is Health.WARNING and inst.draining


async def test_updates_of_missing_records_raise_not_found(registry: Registry) -> None:
    """set_health, set_draining, deregister, get/delete/scale of unknown names raise NotFoundError."""
    for call in (
        registry.set_health("web", "x", Health.PASSING),
        registry.set_draining("web", "x"),
        registry.deregister_instance("web", "x"),
        registry.get_service("nope"),
        registry.delete_service("nope"),
        registry.scale("nope", 3),
        registry.delete_route("nope"),
    ):
        with pytest.raises(NotFoundError):
            await call


async def test_scale_changes_only_the_instance_count(registry: Registry) -> None:
    """scale rewrites the spec's instances and leaves every other field; a negative count is rejected."""
    await registry.put_service(_svc("web", 2))
    spec = await registry.scale("web", 5)
    assert spec == _svc("web", 5) and await registry.get_service("web") == spec
    with pytest.raises(ValidationError):
        await registry.scale("web", -1)


async def test_apply_writes_one_revision_and_deletes_what_is_not_named(registry: Registry) -> None:
    """apply puts the named services and routes and deletes the others, all at one new revision."""
    await registry.put_service(_svc("old"))
    await registry.put_route(_route("old", "old"))
    await registry.put_service(_svc("keep"))
    before = await registry.revision()
    rev = await registry.apply([_svc("keep"), _svc("new")], [_route("new", "new")])
    assert rev == before + 1
    assert [s.name for s in await registry.list_services()] == ["keep", "new"]
    assert [r.name for r in await registry.list_routes()] == ["new"]
    _, kvs = await registry.snapshot("/jishi/services/keep")
    assert kvs[0].version == 1  # unchanged record not rewritten
    assert await registry.apply([_svc("keep"), _svc("new")], [_route("new", "new")]) == rev  # no-op


async def test_apply_rejects_duplicate_names(registry: Registry) -> None:
    """Two services with one name in an apply are refused before anything is written."""
    with pytest.raises(ValueError, match="repeated: web"):
        await registry.apply([_svc("web"), _svc("web", 3)], [])
    assert await registry.list_services() == []


async def test_members_live_under_their_lease(registry: Registry, store: SqliteStore, clock: FakeClock) -> None:
    """Gateways and agents are listed while their lease lives and gone once it expires."""
    lease = await registry.grant_lease(2.0)
    await registry.register_gateway(GatewayInfo(id="g1", url="http://127.0.0.1:8080", pid=1, started_at=1.0), lease)
    await registry.register_agent(AgentInfo(id="a1", host="h", pid=2, started_at=1.0), lease)
    status = await registry.status()
    assert [g.id for g in status.gateways] == ["g1"] and [a.id for a in status.agents] == ["a1"]
    await elapse(store, clock, 2.0)
    assert await registry.list_gateways() == [] and await registry.list_agents() == []


async def test_kv_keys_are_relative_to_the_kv_namespace(registry: Registry) -> None:
    """kv_put/kv_get/kv_range/kv_delete work below /jishi/kv/ and return relative keys; kv_range adds the revision."""
    await registry.kv_put("app/a", "1")
    await registry.kv_put("app/b", "2")
    assert [(kv.key, kv.value) for kv in await registry.kv_get("app/", prefix=True)] == [
        (b"app/a", b"1"),
        (b"app/b", b"2"),
    ]
    assert await registry.kv_get("missing") == []
    await registry.put_service(_svc("web"))  # revision 3, outside the KV namespace
    revision, kvs = await registry.kv_range("app/b")
    assert revision == 3 and [(kv.key, kv.mod_revision) for kv in kvs] == [(b"app/b", 2)]
    assert await registry.kv_delete("app/", prefix=True) == 2


async def test_reaper_deregisters_exactly_at_the_deadline(registry: Registry, clock: FakeClock) -> None:
    """Critical since t=1000 with a 10 s deadline: kept by reap(1009.999), removed by reap(1010)."""
    lease = await registry.grant_lease(60.0)
    await registry.register_instance(_inst("sick", deregister_critical_after=10.0), lease)
    await registry.register_instance(_inst("fine", deregister_critical_after=10.0), lease)
    await registry.set_health("web", "fine", Health.PASSING)
    assert await registry.reap(1009.999) == []
    removed = await registry.reap(1010.0)
    assert [i.id for i in removed] == ["sick"]
    assert [i.id for i in await registry.list_instances()] == ["fine"]


async def test_recovery_resets_the_deregistration_deadline(registry: Registry, clock: FakeClock) -> None:
    """An instance that passes and then fails again counts its deadline from the new failure."""
    lease = await registry.grant_lease(60.0)
    await registry.register_instance(_inst("a", deregister_critical_after=10.0), lease)
    clock.advance(8.0)
    await registry.set_health("web", "a", Health.PASSING)
    clock.advance(1.0)
    await registry.set_health("web", "a", Health.CRITICAL, "connection refused")  # since 1009
    assert await registry.reap(1018.5) == []
    assert [i.id for i in await registry.reap(1019.0)] == ["a"]


async def test_watch_of_registry_changes_is_ordered(registry: Registry) -> None:
    """A watch from an old revision replays service puts and deletes in order."""
    start = await registry.revision() + 1
    await registry.put_service(_svc("a"))
    await registry.put_service(_svc("b"))
    await registry.delete_service("a")
    events = registry.watch("/jishi/services/", start)
    seen = []
    with contextlib.suppress(TimeoutError):
        while len(seen) < 3:
            seen.append(await asyncio.wait_for(anext(events), 5))
    await events.aclose()  # type: ignore[attr-defined]
    assert [(e.type, e.kv.key) for e in seen] == [
        (EventType.PUT, b"/jishi/services/a"),
        (EventType.PUT, b"/jishi/services/b"),
        (EventType.DELETE, b"/jishi/services/a"),
    ]
