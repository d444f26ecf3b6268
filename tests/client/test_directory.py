"""`ServiceDirectory`: follows the control plane, survives compaction, and keeps working from its cache."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_harness import Cluster, eventually, start_backend

from jishi.api import HttpControlPlane
from jishi.client import Client, ServiceDirectory, ServiceUnavailable, SyncClient
from jishi.errors import CompactedError
from jishi.registry import Health, Registry
from jishi.store import Event
from jishi.testing import ProcessGroup, free_port, wait_for_port


async def test_follows_a_deregistration_within_100ms(cluster: Cluster, directory: ServiceDirectory) -> None:
    """An instance deregistered in the control plane leaves the directory within ~100 ms."""
    b = await cluster(2)
    await eventually(lambda: len(directory.instances("svc")) == 2)
    registry = directory.cp
    assert isinstance(registry, Registry)
    started = time.monotonic()
    await registry.deregister_instance("svc", "b1")
    await eventually(lambda: [i.id for i in directory.instances("svc")] == ["b0"], within=1.0)
    assert time.monotonic() - started < 0.1  # typically ~6 ms
    assert b[1].proc.alive()


async def test_unhealthy_instances_leave_rotation(cluster: Cluster, directory: ServiceDirectory) -> None:
    """A critical or draining instance is known but not in rotation; a client no longer calls it."""
    await cluster(3)
    await eventually(lambda: len(directory.instances("svc")) == 3)
    registry = directory.cp
    assert isinstance(registry, Registry)
    await registry.set_health("svc", "b0", Health.CRITICAL)
    await registry.set_draining("svc", "b2")
    await eventually(lambda: [i.id for i in directory.instances("svc")] == ["b1"])
    assert len(directory.all_instances("svc")) == 3
    async with Client(directory, "svc") as client:
        assert {(await client.get("/whoami")).json()["name"] for _ in range(5)} == {"b1"}


async def test_no_instance_raises_service_unavailable(directory: ServiceDirectory) -> None:
    """A call to a service without instances in rotation raises ServiceUnavailable naming the service."""
    async with Client(directory, "nobody") as client:
        with pytest.raises(ServiceUnavailable, match="'nobody'"):
            await client.get("/x")


class CompactingOnce:
    """A control plane whose first watch reports that its history was compacted."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.snapshots = 0
        self.watches = 0

    async def snapshot(self, prefix: str) -> tuple[int, list]:  # type: ignore[type-arg]
        self.snapshots += 1
        return await self.registry.snapshot(prefix)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        self.watches += 1
        if self.watches == 1:
            raise CompactedError(start_revision, start_revision + 5)
        async for event in self.registry.watch(prefix, start_revision):
            yield event


async def test_resnapshots_after_compaction(cluster: Cluster, registry: Registry) -> None:
    """When the watch history is gone the directory takes a new snapshot and follows from there."""
    cp = CompactingOnce(registry)
    async with ServiceDirectory(cp, backoff=(0.01, 0.05)) as directory:  # type: ignore[arg-type]
        await cluster(1)
        await eventually(lambda: len(directory.instances("svc")) == 1)
        assert cp.snapshots >= 2
        await registry.deregister_instance("svc", "b0")
        await eventually(lambda: directory.instances("svc") == [])


async def test_unreadable_cache_is_ignored(tmp_path: Path, registry: Registry, cluster: Cluster) -> None:
    """A corrupt cache file is logged and skipped; the directory then fills from the control plane."""
    cache = tmp_path / "directory.json"
    cache.write_text("{not json")
    async with ServiceDirectory(registry, cache_path=cache) as directory:
        assert directory.source == "none"
        await cluster(1)
        await eventually(lambda: len(directory.instances("svc")) == 1)


async def start_server(procs: ProcessGroup, tmp_path: Path) -> tuple[str, int]:
    port = free_port()
    procs.python("server", "-m", "jishi.server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "cp"))
    await asyncio.to_thread(wait_for_port, port)
    return f"http://127.0.0.1:{port}", port


async def test_works_from_the_cache_with_the_control_plane_gone(procs: ProcessGroup, tmp_path: Path) -> None:
    """With the control plane killed, a running directory keeps its instances and a fresh one starts from the cache."""
    url, _ = await start_server(procs, tmp_path)
    server = procs.processes[-1]
    backends = [start_backend(procs, f"b{i}") for i in range(2)]
    cache = tmp_path / "directory.json"
    async with HttpControlPlane(url) as cp:
        lease = await cp.grant_lease(60.0)
        for b in backends:
            await cp.register_instance(b.instance(), lease)
        async with ServiceDirectory(cp, cache_path=cache, persist_delay=0.01) as directory:
            await eventually(lambda: len(directory.instances("svc")) == 2)
            await eventually(lambda: cache.exists())
            server.signal(signal.SIGKILL)
            server.popen.wait(5)
            async with Client(directory, "svc") as client:
                assert {(await client.get("/whoami")).json()["name"] for _ in range(4)} == {"b0", "b1"}

        # A process that starts now, with the control plane still down, works from the cache.
        async with HttpControlPlane(url, timeout=0.5) as dead, ServiceDirectory(dead, cache_path=cache) as fresh:
            assert fresh.ready.is_set() and not fresh.synced.is_set() and fresh.source == "cache"
            async with Client(fresh, "svc") as client:
                assert {(await client.get("/whoami")).json()["name"] for _ in range(4)} == {"b0", "b1"}


def test_sync_client_calls_and_survives_the_control_plane(procs: ProcessGroup, tmp_path: Path) -> None:
    """SyncClient calls instances from plain code, and a new one starts from the cache when the server is gone."""
    url, _ = asyncio.run(start_server(procs, tmp_path))
    server = procs.processes[-1]
    b0 = start_backend(procs, "b0")

    async def register() -> None:
        async with HttpControlPlane(url) as cp:
            await cp.register_instance(b0.instance(), await cp.grant_lease(60.0))

    asyncio.run(register())
    cache = tmp_path / "sync.json"
    with SyncClient(url, "svc", cache_path=cache) as client:
        assert client.get("/whoami").json()["name"] == "b0"
        assert client.post("/echo", content=b"hi").json()["body"] == "hi"
    assert cache.exists()
    server.signal(signal.SIGKILL)
    server.popen.wait(5)
    with SyncClient(url, "svc", cache_path=cache, ready_timeout=1.0) as client:
        assert client.get("/whoami").json()["name"] == "b0"
