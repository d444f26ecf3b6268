"""Watch streams over real HTTP (uvicorn in this process): order, heartbeats, lease expiry, reaper, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jishi.api import HttpControlPlane
from jishi.errors import CompactedError
from jishi.registry import Health, Instance, Registry, Route, RouteBackend, ServiceSpec
from jishi.server import ControlPlaneServer
from jishi.store import Event, EventType
from jishi.store.sqlite import SqliteStore
from jishi.testing import free_port


@dataclass
class Running:
    server: ControlPlaneServer
    task: asyncio.Task[None]
    url: str
    cp: HttpControlPlane


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    store = await SqliteStore.open(tmp_path / "state.db", synchronous="NORMAL", expiry_interval=0.02)
    port = free_port()
    server = ControlPlaneServer(Registry(store), port=port, heartbeat=0.2, reap_interval=0.05, grace=2)
    task = asyncio.create_task(server.run())
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.01)
    cp = HttpControlPlane(f"http://127.0.0.1:{port}", watch_idle_timeout=2.0)
    try:
        yield Running(server, task, f"http://127.0.0.1:{port}", cp)
    finally:
        await cp.aclose()
        server.stop()
        await asyncio.wait_for(task, 10)
        await store.close()


async def _collect(events: AsyncIterator[Event], n: int, within: float = 10.0) -> list[Event]:
    seen: list[Event] = []

    async def take() -> None:
        async for event in events:
            seen.append(event)
            if len(seen) == n:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(take(), within)
    await events.aclose()  # type: ignore[attr-defined]
    return seen


async def test_watch_delivers_history_then_live_events_in_order(running: Running) -> None:
    """From an old revision the HTTP watch replays history, then live changes, a txn's keys together, in order."""
    cp = running.cp
    start = await cp.revision() + 1
    await cp.kv_put("a", "1")
    await cp.kv_put("b", "2")
    watch = cp.watch("/jishi/", start)
    collector = asyncio.create_task(_collect(watch, 7))  # apply also stores its config.applied event
    await asyncio.sleep(0.1)
    await cp.kv_delete("a")
    spec = ServiceSpec(name="web", command=["x"])
    await cp.apply([spec], [Route(name="web", backends=[RouteBackend(service="web")])])  # 2 keys, 1 revision
    await cp.kv_put("c", "3")
    seen = [e for e in await collector if not e.kv.key.startswith(b"/jishi/events/")]
    assert [(e.type, e.kv.key.decode()) for e in seen] == [
        (EventType.PUT, "/jishi/kv/a"),
        (EventType.PUT, "/jishi/kv/b"),
        (EventType.DELETE, "/jishi/kv/a"),
        (EventType.PUT, "/jishi/services/web"),
        (EventType.PUT, "/jishi/routes/web"),
        (EventType.PUT, "/jishi/kv/c"),
    ]
    revisions = [e.kv.mod_revision for e in seen]
    assert revisions == sorted(revisions) and revisions[3] == revisions[4]


async def test_idle_stream_sends_heartbeats(running: Running) -> None:
    """A watch with no events gets a heartbeat line at once and then one about every `heartbeat` seconds."""
    lines = []
    async with (
        httpx.AsyncClient(base_url=running.url) as http,
        http.stream("GET", "/v1/watch", params={"prefix": "/nothing/"}) as response,
    ):
        assert response.headers["content-type"].startswith("application/x-ndjson")
        started = time.monotonic()
        async for line in response.aiter_lines():
            lines.append(json.loads(line))
            if len(lines) == 3:
                break
    assert all("heartbeat" in line for line in lines)
    assert time.monotonic() - started < 2.0


async def test_lease_expiry_is_seen_as_delete_over_http(running: Running) -> None:
    """An instance whose lease is not kept alive disappears, and the HTTP watch carries the DELETE."""
    cp = running.cp
    lease = await cp.grant_lease(0.3)
    start = await cp.revision() + 1
    await cp.register_instance(Instance(id="w1", service="web", port=9000), lease)
    seen = await _collect(cp.watch("/jishi/instances/", start), 2)
    assert [(e.type, e.kv.key) for e in seen] == [
        (EventType.PUT, b"/jishi/instances/web/w1"),
        (EventType.DELETE, b"/jishi/instances/web/w1"),
    ]
    assert await cp.list_instances() == []


async def test_reaper_deregisters_a_long_critical_instance(running: Running) -> None:
    """The server's reaper removes an instance critical past its deadline; a healthy sibling stays."""
    cp = running.cp
    lease = await cp.grant_lease(30.0)
    await cp.register_instance(Instance(id="sick", service="web", port=9000, deregister_critical_after=0.3), lease)
    await cp.register_instance(Instance(id="fine", service="web", port=9001, deregister_critical_after=0.3), lease)
    await cp.set_health("web", "fine", Health.PASSING)
    started = time.monotonic()
    while [i.id for i in await cp.list_instances()] != ["fine"]:
        assert time.monotonic() - started < 5, "the reaper did not remove the critical instance"
        await asyncio.sleep(0.05)
    assert time.monotonic() - started >= 0.2  # not before its deadline


async def test_stop_ends_open_watch_streams_promptly(running: Running) -> None:
    """stop() with a watch open ends the stream cleanly and run() returns well within the grace period."""
    async with (
        httpx.AsyncClient(base_url=running.url) as http,
        http.stream("GET", "/v1/watch", params={"prefix": "/jishi/"}) as response,
    ):
        lines = response.aiter_lines()
        assert "heartbeat" in json.loads(await anext(lines))
        started = time.monotonic()
        running.server.stop()
        rest = [line async for line in lines]
        await asyncio.wait_for(running.task, 5)
    assert all("heartbeat" in json.loads(line) for line in rest if line)
    assert time.monotonic() - started < 1.5


async def test_compactor_keeps_only_recent_history_and_watchers_get_compacted(tmp_path: Path) -> None:
    """compact_once forgets revisions older than the newest history_revisions; a watch from before → 410."""
    store = await SqliteStore.open(tmp_path / "state.db", synchronous="NORMAL")
    try:
        registry = Registry(store)
        server = ControlPlaneServer(registry, port=free_port(), history_revisions=5)
        for i in range(12):
            await registry.kv_put(f"k{i}", str(i))
        assert await server.compact_once() == 12 - 5
        assert store.compact_revision == 7
        assert await server.compact_once() is None  # nothing new to forget
        with pytest.raises(CompactedError):
            await anext(aiter(store.watch(b"/jishi/kv/", prefix=True, start_revision=3)))
        assert [kv.value for kv in await registry.kv_get("k11")] == [b"11"]
    finally:
        await store.close()


async def test_a_watch_from_the_compact_revision_itself_streams_over_http(running: Running) -> None:
    """After compact(r) the HTTP watch from r replays r and what follows (etcd's boundary); from r - 1 it is 410."""
    cp, store = running.cp, running.server.registry.store
    for i in range(4):
        await cp.kv_put(f"k{i}", str(i))
    await cp.kv_delete("k1")  # revision 5
    await cp.kv_put("k4", "4")
    await store.compact(5)
    with pytest.raises(CompactedError):
        await anext(cp.watch("/jishi/kv/", 4))  # type: ignore[arg-type]
    seen = await _collect(cp.watch("/jishi/kv/", 5), 2)
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in seen] == [
        (EventType.DELETE, b"/jishi/kv/k1", 5),
        (EventType.PUT, b"/jishi/kv/k4", 6),
    ]
