"""follow(): snapshot, then watch; a fresh snapshot after compaction; fallback and backoff on failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jishi.errors import CompactedError, ControlPlaneUnavailable
from jishi.registry import Registry
from jishi.registry.follow import follow
from jishi.store import Event, EventType, KeyValue
from jishi.store.sqlite import SqliteStore


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = await SqliteStore.open(tmp_path / "state.db", synchronous="NORMAL")
    try:
        yield Registry(store)
    finally:
        await store.close()


class Recorder:
    def __init__(self) -> None:
        self.snapshots: list[tuple[int, list[bytes]]] = []
        self.events: list[tuple[EventType, bytes]] = []
        self.errors: list[BaseException] = []
        self.changed = asyncio.Event()

    def on_snapshot(self, revision: int, kvs: list[KeyValue]) -> None:
        self.snapshots.append((revision, [kv.key for kv in kvs]))
        self.changed.set()

    def on_event(self, event: Event) -> None:
        self.events.append((event.type, event.kv.key))
        self.changed.set()

    def on_error(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.changed.set()

    async def until(self, predicate: object, within: float = 5.0) -> None:
        assert callable(predicate)
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def _run(cp: object, rec: Recorder, prefix: str = "/jishi/kv/") -> asyncio.Task[None]:
    return asyncio.create_task(
        follow(
            cp,
            prefix,
            on_snapshot=rec.on_snapshot,
            on_event=rec.on_event,
            on_error=rec.on_error,  # type: ignore[arg-type]
            backoff=(0.01, 0.02),
        )
    )


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_snapshot_then_every_event_in_order(registry: Registry) -> None:
    """The snapshot holds what existed; later writes arrive as events, in order, with no duplicate."""
    await registry.kv_put("a", "1")
    rec = Recorder()
    task = await _run(registry, rec)
    try:
        await rec.until(lambda: rec.snapshots)
        await registry.kv_put("b", "2")
        await registry.kv_delete("a")
        await rec.until(lambda: len(rec.events) == 2)
        assert rec.snapshots == [(1, [b"/jishi/kv/a"])]
        assert rec.events == [(EventType.PUT, b"/jishi/kv/b"), (EventType.DELETE, b"/jishi/kv/a")]
    finally:
        await _stop(task)


class FlakyControlPlane:
    """A control plane whose snapshot fails `failures` times, then whose watch is compacted once."""

    def __init__(self, registry: Registry, failures: int) -> None:
        self.registry, self.failures, self.compacted_once = registry, failures, False
        self.closed_watches = 0

    async def snapshot(self, prefix: str) -> tuple[int, list[KeyValue]]:
        if self.failures:
            self.failures -= 1
            raise ControlPlaneUnavailable("down for the test")
        return await self.registry.snapshot(prefix)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        try:
            if not self.compacted_once:
                self.compacted_once = True
                raise CompactedError(start_revision, start_revision)
            async for event in self.registry.watch(prefix, start_revision):
                yield event
        finally:
            self.closed_watches += 1


async def test_failures_call_on_error_then_a_compaction_takes_a_fresh_snapshot(registry: Registry) -> None:
    """Two unreachable snapshots → on_error twice and retries; a compacted watch → a second snapshot, closed."""
    cp = FlakyControlPlane(registry, failures=2)
    rec = Recorder()
    task = await _run(cp, rec)
    try:
        await rec.until(lambda: len(rec.snapshots) == 2)
        assert [type(e) for e in rec.errors] == [ControlPlaneUnavailable, ControlPlaneUnavailable]
        assert cp.closed_watches == 1  # the compacted watch was closed before the next snapshot
        await registry.kv_put("c", "3")
        await rec.until(lambda: rec.events)
        assert rec.events == [(EventType.PUT, b"/jishi/kv/c")]
    finally:
        await _stop(task)
    assert cp.closed_watches == 2  # cancelling the follower closes its watch too
