"""The event log on a Registry (SqliteStore): ids in time order, queries, retention, emitters, restart requests."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jishi.errors import NotFoundError
from jishi.registry import Instance, Registry, Route, RouteBackend, ServiceSpec
from jishi.registry.events import EventIds, EventIndex, expired, id_time, select
from jishi.registry.model import RESTARTS, EventRecord, RestartRequest, restart_key
from jishi.store.sqlite import SqliteStore
from jishi.testing import FakeClock


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "state.db", clock=FakeClock(), synchronous="NORMAL")
    yield store
    await store.close()


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def registry(store: SqliteStore, wall: FakeClock) -> Registry:
    return Registry(store, wall=wall)


def ev(kind: str, subject: str, reason: str = "x", t: float = 1.0) -> EventRecord:
    return EventRecord(time=t, kind=kind, subject=subject, reason=reason)


def test_ids_increase_even_when_the_clock_stands_still_or_steps_back() -> None:
    """EventIds: 16-digit µs + 4 hex; strictly increasing as strings; id_time gives the stamp back."""
    ids = EventIds(random.Random(1))
    made = [ids.next(1000.0), ids.next(1000.0), ids.next(999.0), ids.next(1000.5)]
    assert made == sorted(made) and len(set(made)) == 4
    assert all(len(i) == 20 for i in made)
    assert id_time(made[0]) == 1000.0 and id_time(made[3]) == 1000.5
    assert id_time("not-an-id") == 0.0


def test_select_kind_and_subject_match_children_and_limit_keeps_the_right_end() -> None:
    """kind matches dotted children, subject matches slashed children; no since → newest N, since → first N after."""
    events = [
        ev("instance.started", "web/web-1").model_copy(update={"id": "01"}),
        ev("instance.exited", "web/web-1").model_copy(update={"id": "02"}),
        ev("instances.other", "web").model_copy(update={"id": "03"}),
        ev("service.scaled", "webby").model_copy(update={"id": "04"}),
        ev("service.scaled", "web").model_copy(update={"id": "05"}),
    ]
    assert [e.id for e in select(events, kind="instance")] == ["01", "02"]
    assert [e.id for e in select(events, subject="web")] == ["01", "02", "03", "05"]
    assert [e.id for e in select(events, limit=2)] == ["04", "05"]
    assert [e.id for e in select(events, since="01", limit=2)] == ["02", "03"]
    assert select(events, limit=0) == []


def test_expired_by_count_and_by_age() -> None:
    """Retention removes everything beyond the newest max_events and everything older than max_age."""
    ids = [f"{t * 1_000_000:016d}0000" for t in (100, 200, 300, 400, 500)]
    assert expired(ids, 500.0, max_events=3, max_age=1000) == ids[:2]
    assert expired(ids, 500.0, max_events=10, max_age=250) == ids[:2]
    assert expired(ids, 500.0, max_events=10, max_age=1000) == []


async def test_record_and_query(registry: Registry, wall: FakeClock) -> None:
    """record_event assigns increasing ids from the wall clock; events() filters and pages with since."""
    stored = []
    for i in range(5):
        wall.advance(1.0)
        stored.append(await registry.record_event(ev("instance.exited" if i % 2 else "instance.started", f"web/w{i}")))
    assert [e.id for e in stored] == sorted(e.id for e in stored)
    assert id_time(stored[0].id) == 1_700_000_001.0
    assert await registry.events() == stored
    assert await registry.events(limit=2) == stored[3:]
    assert await registry.events(since=stored[1].id, limit=2) == stored[2:4]
    assert await registry.events(kind="instance.exited") == [stored[1], stored[3]]
    assert await registry.events(subject="web/w4") == [stored[4]]
    assert await registry.events(kind="instance", limit=1) == [stored[4]]


async def test_sweep_keeps_the_newest_and_the_young(registry: Registry, wall: FakeClock) -> None:
    """sweep_events deletes beyond max_events (oldest first) and older than max_age; the rest stay queryable."""
    for _ in range(6):
        wall.advance(10.0)
        await registry.record_event(ev("x.y", "s"))
    assert await registry.sweep_events(max_events=4, max_age=1e9) == 2
    assert len(await registry.events()) == 4
    assert await registry.sweep_events(max_events=4, max_age=15.0) == 2  # now +60: +30, +40 go
    assert [id_time(e.id) for e in await registry.events()] == [1_700_000_050.0, 1_700_000_060.0]


async def test_scale_records_from_and_to_and_a_no_op_records_nothing(registry: Registry) -> None:
    """scale emits service.scaled (from→to) when the count changes; the same count emits nothing."""
    await registry.put_service(ServiceSpec(name="web", command=["x"], instances=2))
    await registry.scale("web", 5)
    await registry.scale("web", 5)
    events = await registry.events(kind="service.scaled")
    assert len(events) == 1
    assert events[0].subject == "web" and events[0].reason == "scaled from 2 to 5 instances"
    assert events[0].labels == {"service": "web", "from": "2", "to": "5"}


async def test_apply_records_what_changed_in_the_same_revision(registry: Registry, store: SqliteStore) -> None:
    """apply emits config.applied naming added, changed and removed services/routes; a no-op apply, none."""
    web = ServiceSpec(name="web", command=["x"])
    api = ServiceSpec(name="api", command=["y"])
    route = Route(name="web", backends=[RouteBackend(service="web")])
    await registry.apply([web, api], [route])
    revision = await registry.apply([web.model_copy(update={"instances": 3})], [route])  # web changed, api removed
    await registry.apply([web.model_copy(update={"instances": 3})], [route])  # nothing changes
    events = await registry.events(kind="config.applied")
    assert [e.reason for e in events] == [
        "added services: api, web; added routes: web",
        "changed services: web; removed services: api",
    ]
    assert events[1].labels == {"changed_services": "web", "removed_services": "api"}
    kv = (await store.get(f"/jishi/events/{events[1].id}".encode())).kvs[0]
    assert kv.mod_revision == revision


async def test_restart_request_lives_under_the_instance_lease(registry: Registry) -> None:
    """request_restart needs a registered instance, stores a request under its lease and an event; clear removes it."""
    with pytest.raises(NotFoundError):
        await registry.request_restart("web", "web-1")
    lease = await registry.grant_lease(30.0)
    await registry.register_instance(Instance(id="web-1", service="web", port=9001), lease)
    await registry.request_restart("web", "web-1", "stuck")
    _, kvs = await registry.snapshot(RESTARTS)
    assert [kv.key.decode() for kv in kvs] == [restart_key("web", "web-1")] and kvs[0].lease == lease
    assert RestartRequest.model_validate_json(kvs[0].value).reason == "stuck"
    assert [e.kind for e in await registry.events(subject="web/web-1")] == ["instance.restart_requested"]
    await registry.clear_restart("web", "web-1")
    await registry.clear_restart("web", "web-1")  # clearing none is fine
    assert (await registry.snapshot(RESTARTS))[1] == []
    await registry.request_restart("web", "web-1")
    await registry.revoke_lease(lease)
    assert (await registry.snapshot(RESTARTS))[1] == []


async def test_follow_events_gives_the_backlog_then_live_events(registry: Registry) -> None:
    """follow_events(since) yields the events after since, then new ones as they are stored, filtered."""
    first = await registry.record_event(ev("a.b", "s1"))
    second = await registry.record_event(ev("a.c", "s2"))
    seen: list[EventRecord] = []
    follower = registry.follow_events(first.id, kind="a")

    async def read() -> None:
        async for event in follower:
            seen.append(event)
            if len(seen) == 3:
                return

    task = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    await registry.record_event(ev("other.kind", "s3"))
    third = await registry.record_event(ev("a.d", "s4"))
    fourth = await registry.record_event(ev("a.e", "s5"))
    await asyncio.wait_for(task, 5.0)
    await follower.aclose()  # type: ignore[attr-defined]
    assert seen == [second, third, fourth]


async def test_index_answers_exactly_as_the_store(registry: Registry, wall: FakeClock) -> None:
    """With a synced EventIndex, every query gives what the store-reading path gives (the reference)."""
    rng = random.Random(7)
    for _ in range(60):
        wall.advance(rng.random())
        kind = rng.choice(["instance.started", "instance.exited", "service.scaled", "alert.firing"])
        await registry.record_event(ev(kind, rng.choice(["web", "web/w1", "web/w2", "api", "api/a1"])))
    everything = await registry.events(limit=1000)
    index = EventIndex()
    index.reset(*await registry.snapshot("/jishi/events/"))
    queries = [{"limit": n} for n in (1, 5, 100)]
    queries += [{"since": everything[i].id, "limit": 7} for i in (0, 30, 59)]
    queries += [{"kind": k, "limit": 4} for k in ("instance", "service.scaled", "alert", "nope")]
    queries += [{"subject": s, "limit": 9, "since": everything[10].id} for s in ("web", "api/a1")]
    expected = [await registry.events(**q) for q in queries]  # type: ignore[arg-type]
    registry.event_index = index
    assert [await registry.events(**q) for q in queries] == expected  # type: ignore[arg-type]


async def test_index_follows_the_store_and_retention(registry: Registry, wall: FakeClock) -> None:
    """EventIndex.run keeps up with new events (also those stored by others) and with sweeps."""
    index = EventIndex()
    registry.event_index = index
    task = asyncio.create_task(index.run(registry))
    try:
        for _ in range(50):
            if index.synced:
                break
            await asyncio.sleep(0.02)
        assert index.synced
        other = Registry(registry.store, wall=wall)  # another writer: only the watch tells the index
        for i in range(5):
            wall.advance(1.0)
            await other.record_event(ev("x.y", f"s{i}"))
        for _ in range(100):
            if len(index) == 5:
                break
            await asyncio.sleep(0.02)
        assert [e.subject for e in await registry.events()] == ["s0", "s1", "s2", "s3", "s4"]
        assert await registry.sweep_events(max_events=2, max_age=1e9) == 3
        assert [e.subject for e in await registry.events()] == ["s3", "s4"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not index.synced


async def test_record_events_stores_a_batch_in_one_revision(registry: Registry, store: SqliteStore) -> None:
    """record_events: every event gets its own increasing id, all written at one store revision."""
    before = await store.revision()
    stored = await registry.record_events([ev("a.b", f"s{i}") for i in range(4)])
    assert await store.revision() == before + 1
    assert [e.id for e in stored] == sorted({e.id for e in stored})
    assert await registry.events() == stored
    assert await registry.record_events([]) == []
