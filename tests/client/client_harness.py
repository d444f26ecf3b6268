"""Helpers for client tests: real backend processes, registered in a Registry on a SqliteStore in tmp_path."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jishi.client import ServiceDirectory
from jishi.registry import Health, Instance, Registry
from jishi.store.sqlite import SqliteStore
from jishi.testing import ManagedProcess, ProcessGroup, free_port, wait_for_port

BACKEND = str(Path(__file__).with_name("backend.py"))


@dataclass
class Backend:
    name: str
    port: int
    proc: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def instance(self, service: str = "svc") -> Instance:
        return Instance(id=self.name, service=service, port=self.port, health=Health.PASSING)

    async def control(self, **params: object) -> None:
        """Set the backend's behaviour (see backend.py)."""
        async with httpx.AsyncClient(trust_env=False) as http:
            (await http.get(f"{self.url}/_control", params=params)).raise_for_status()

    async def stats(self) -> dict[str, object]:
        async with httpx.AsyncClient(trust_env=False) as http:
            result: dict[str, object] = (await http.get(f"{self.url}/_stats")).json()
            return result


def start_backend(procs: ProcessGroup, name: str) -> Backend:
    port = free_port()
    proc = procs.start(name, [sys.executable, BACKEND, str(port), name])
    wait_for_port(port)
    return Backend(name, port, proc)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    """An in-process control plane on a SqliteStore in tmp_path."""
    store = await SqliteStore.open(tmp_path / "state.db", synchronous="NORMAL")
    try:
        yield Registry(store)
    finally:
        await store.close()


Cluster = Callable[..., Awaitable[list[Backend]]]


@pytest.fixture
def cluster(procs: ProcessGroup, registry: Registry) -> Cluster:
    """`await cluster(n, service="svc")`: n backends b0…, each registered (passing) under one lease."""

    async def make(n: int, service: str = "svc") -> list[Backend]:
        backends = [start_backend(procs, f"b{i}") for i in range(n)]
        lease = await registry.grant_lease(60.0)
        for b in backends:
            await registry.register_instance(b.instance(service), lease)
        return backends

    return make


@pytest.fixture
async def directory(registry: Registry) -> AsyncIterator[ServiceDirectory]:
    """A ServiceDirectory following `registry`, already synced."""
    async with ServiceDirectory(registry) as d:
        await d.synced.wait()
        yield d


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], within: float = 5.0) -> None:
    """Wait until `check()` is true; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)
