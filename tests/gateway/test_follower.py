"""The follower: snapshot + watch into the routing table, the on-disk snapshot, and self-registration."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import simple_route, start_backend

from jishi.errors import CompactedError, ControlPlaneUnavailable
from jishi.gateway import Follower, Proxy
from jishi.registry import Health, Instance, Registry
from jishi.store import Event
from jishi.store.sqlite import SqliteStore
from jishi.testing import ProcessGroup, free_port, wait_for_port


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = await SqliteStore.open(tmp_path / "state.db", synchronous="NORMAL")
    try:
        yield Registry(store)
    finally:
        await store.close()


async def wait_for(predicate, limit: float = 5.0) -> float:
    """Poll `predicate` on the loop; returns the seconds it took."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"not true within {limit} s")
        await asyncio.sleep(0.001)
    return time.monotonic() - t0


def peers(proxy: Proxy, route: str) -> set[str]:
    entry = proxy.table.routes.get(route)
    return {p.key for p in entry.balancer.peers} if entry else set()


async def register(registry: Registry, service: str, n: int, lease: int, health: Health = Health.PASSING) -> Instance:
    inst = Instance(id=f"{service}-{n}", service=service, port=21000 + n)
    await registry.register_instance(inst, lease)
    if health is not Health.CRITICAL:
        return await registry.set_health(service, inst.id, health)
    return inst


async def test_changes_reach_the_routing_table_quickly(registry: Registry, tmp_path: Path) -> None:
    """Routes and instances put in the registry appear in the table, and removals leave it, within 50 ms."""
    proxy = Proxy()
    follower = Follower(registry, proxy, tmp_path / "gw", gateway_id="gw1", url="http://x")
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.synced.wait(), 5)
        lease = await registry.grant_lease(30)
        await registry.put_route(simple_route("svc"))
        await wait_for(lambda: "svc" in proxy.table.routes)
        delays = []
        for n in range(5):
            await register(registry, "svc", n, lease)
            delays.append(await wait_for(lambda n=n: f"svc/svc-{n}" in peers(proxy, "svc")))
        await registry.set_health("svc", "svc-0", Health.CRITICAL)
        delays.append(await wait_for(lambda: "svc/svc-0" not in peers(proxy, "svc")))
        await registry.deregister_instance("svc", "svc-1")
        delays.append(await wait_for(lambda: "svc/svc-1" not in peers(proxy, "svc")))
        assert max(delays) < 0.05, delays
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_snapshot_is_written_and_restores_a_fresh_follower(registry: Registry, tmp_path: Path) -> None:
    """After a change the snapshot file holds it; a new follower with no control plane serves from it."""
    proxy = Proxy()
    state = tmp_path / "gw"
    follower = Follower(registry, proxy, state, gateway_id="gw1", url="http://x", persist_delay=0.01)
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.synced.wait(), 5)
        lease = await registry.grant_lease(30)
        await registry.put_route(simple_route("svc"))
        await register(registry, "svc", 1, lease)

        def saved() -> bool:
            path = state / "snapshot.json"
            return path.exists() and len(json.loads(path.read_text())["instances"]) == 1

        await wait_for(saved, 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not list(state.glob("*.tmp-*"))

    fresh = Proxy()
    assert Follower(Unreachable(), fresh, state, gateway_id="gw2", url="http://y").load_snapshot()
    assert peers(fresh, "svc") == {"svc/svc-1"}


class Unreachable:
    """A control plane that cannot be reached."""

    async def snapshot(self, prefix: str):
        raise ControlPlaneUnavailable("down")

    async def grant_lease(self, ttl: float) -> int:
        raise ControlPlaneUnavailable("down")


class CompactOnce:
    """Wraps a registry; the first watch reports compaction."""

    def __init__(self, inner: Registry) -> None:
        self.inner = inner
        self.snapshots = 0
        self.compacted = False

    async def snapshot(self, prefix: str):
        self.snapshots += 1
        return await self.inner.snapshot(prefix)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        if not self.compacted:
            self.compacted = True
            raise CompactedError(start_revision, start_revision)
        async for ev in self.inner.watch(prefix, start_revision):
            yield ev

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


async def test_compacted_watch_leads_to_a_new_snapshot(registry: Registry, tmp_path: Path) -> None:
    """When the watch's history is compacted the follower snapshots again and keeps following."""
    cp = CompactOnce(registry)
    proxy = Proxy()
    follower = Follower(cp, proxy, tmp_path / "gw", gateway_id="gw1", url="http://x")  # type: ignore[arg-type]
    task = asyncio.create_task(follower.run())
    try:
        await registry.put_route(simple_route("svc"))
        await wait_for(lambda: cp.snapshots >= 2)
        await registry.put_route(simple_route("other"))
        await wait_for(lambda: "other" in proxy.table.routes)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_gateway_registers_and_re_registers_after_losing_its_lease(registry: Registry, tmp_path: Path) -> None:
    """The gateway appears in list_gateways; when its lease disappears it registers again; on stop it leaves."""
    follower = Follower(registry, Proxy(), tmp_path / "gw", gateway_id="gw1", url="http://g:1", lease_ttl=0.3)
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.registered.wait(), 5)
        assert [g.url for g in await registry.list_gateways()] == ["http://g:1"]
        assert follower._lease is not None
        await registry.revoke_lease(follower._lease)
        t0 = time.monotonic()
        while not await registry.list_gateways():
            assert time.monotonic() - t0 < 5
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await registry.list_gateways() == []


def test_fresh_gateway_process_serves_from_snapshot_without_control_plane(procs: ProcessGroup, tmp_path: Path) -> None:
    """`python -m jishi.gateway` with a saved snapshot and no reachable control plane routes to live instances."""
    backend = start_backend(procs, "b0")
    state = tmp_path / "gw"
    from jishi.gateway.snapshot import SnapshotFile
    from jishi.gateway.view import RegistryView

    view = RegistryView()
    route = simple_route("svc", "/api/svc", strip_prefix=True)
    view.routes["/jishi/routes/svc"] = route
    inst = backend.instance("svc")
    view.instances[inst.key] = inst
    SnapshotFile(state / "snapshot.json").save(view.dump())

    port = free_port()
    dead_cp = f"http://127.0.0.1:{free_port()}"
    gw = procs.python(
        "gateway", "-m", "jishi.gateway", "--control-plane", dead_cp, "--listen", f"127.0.0.1:{port}",
        "--state-dir", str(state),
    )  # fmt: skip
    wait_for_port(port)
    r = httpx.get(f"http://127.0.0.1:{port}/api/svc/whoami")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "b0" and r.json()["path"] == "/whoami"
    assert gw.alive()
    gw.signal(15)
    gw.popen.wait(10)
    assert gw.popen.returncode == 0, gw.log()
