"""The store conformance suite run against `SqliteStore`, plus what only the SQLite backend promises."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conformance import StoreConformance, take

from jishi.errors import CompactedError, LeaseNotFoundError, StoreError
from jishi.store import Event, EventType, Put, Store
from jishi.store.sqlite import SqliteStore
from jishi.testing import FakeClock, ProcessGroup


class SqliteFactory:
    """Opens a `SqliteStore` in `directory/state.db`; expiry is driven by `expire_due()`."""

    async def __call__(self, directory: Path, clock: FakeClock) -> Store:
        return await SqliteStore.open(directory / "state.db", clock=clock)

    async def expire(self, store: Store) -> None:
        assert isinstance(store, SqliteStore)
        await store.expire_due()


@pytest.fixture
def store_factory() -> SqliteFactory:
    return SqliteFactory()


class TestSqliteConformance(StoreConformance):
    """The whole conformance suite on the SQLite backend."""


async def live_event(store: SqliteStore, watch: AsyncIterator[Event], key: bytes) -> Event:
    """Put `key` while the watch waits on its live queue, so the watch is past its history and live."""
    waiting = asyncio.create_task(anext(watch))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await store.put(key, b"0")
    return await waiting


async def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    """The database file is in WAL mode, so a reader never waits for the writer."""
    store = await SqliteStore.open(tmp_path / "state.db")
    await store.put(b"/a", b"1")
    await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "state.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()[0] == 1


async def test_slow_watcher_is_bounded_and_catches_up(tmp_path: Path) -> None:
    """A watcher that stops reading holds at most `watch_queue_size` revisions, then catches up from the log."""
    store = await SqliteStore.open(tmp_path / "state.db", watch_queue_size=4)
    try:
        watch = store.watch(b"/s/", prefix=True)
        assert (await live_event(store, watch, b"/s/0")).kv.mod_revision == 1
        for i in range(1, 300):
            await store.put(b"/s/%d" % (i % 5), b"%d" % i)
            assert store.watch_backlog <= 4
        assert store.watch_backlog == 4  # full: the hub has been dropping revisions for it
        await store.txn([], [Put(b"/s/x", b"a"), Put(b"/s/y", b"b")])
        events = await take(watch, 301)
        assert [e.kv.mod_revision for e in events] == [*range(2, 301), 301, 301]
        assert [e.kv.key for e in events[-2:]] == [b"/s/x", b"/s/y"]
        await store.put(b"/s/0", b"live again")
        assert (await anext(watch)).kv.value == b"live again"
        await watch.aclose()  # type: ignore[attr-defined]
        assert store.watchers == 0
    finally:
        await store.close()


async def test_slow_watcher_past_compaction_gets_compacted_error(tmp_path: Path) -> None:
    """A watcher that fell behind a compaction cannot catch up and says from where it could resume."""
    store = await SqliteStore.open(tmp_path / "state.db", watch_queue_size=2)
    try:
        watch = store.watch(b"/c")
        await live_event(store, watch, b"/c")
        for i in range(10):
            await store.put(b"/c", b"%d" % i)
        await store.compact(8)
        with pytest.raises(CompactedError) as info:
            await take(watch, 10)
        assert info.value.compact_revision == 8
    finally:
        await store.close()


async def test_background_task_expires_leases_on_the_real_clock(tmp_path: Path) -> None:
    """With the default monotonic clock, the store's own task revokes a lease soon after its TTL."""
    store = await SqliteStore.open(tmp_path / "state.db", expiry_interval=0.05)
    try:
        lease = await store.grant(0.2)
        await store.put(b"/eph", b"1", lease=lease.id)
        watch = store.watch(b"/eph")
        started = time.monotonic()
        event = await take(watch, 1)
        elapsed = time.monotonic() - started
        assert event[0].type is EventType.DELETE
        assert 0.15 <= elapsed < 1.0
        await watch.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


async def _run_normally(store: SqliteStore, clock: FakeClock, seconds: float) -> None:
    """Let `seconds` pass with an expiry pass every 0.1 s, as the running store's own task does."""
    end = clock.now + seconds
    while clock.now < end:
        clock.set(min(end, clock.now + 0.1))
        await store.expire_due()


async def test_a_stall_longer_than_the_ttl_keeps_renewed_leases(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4 s stall of the store under a 3 s lease renewed every second postpones, not expires, the lease."""
    clock = FakeClock(1000.0)
    store = await SqliteStore.open(tmp_path / "state.db", clock=clock, expiry_interval=0.1)
    try:
        lease = await store.grant(3)
        await store.put(b"/i", b"1", lease=lease.id)
        for _ in range(3):
            await _run_normally(store, clock, 1.0)
            await store.keepalive(lease.id)  # last renewal at 1003: due at 1006
        clock.advance(4.0)  # stopped from 1003 to 1007: no pass ran, the next keep-alive waits in a socket
        with caplog.at_level("WARNING", logger="jishi.store.sqlite"):
            assert await store.expire_due() == []
        assert "every lease deadline moves 3.9 s later" in caplog.text
        assert (await store.lease_info(lease.id)).remaining == pytest.approx(3 - 4 + 3.9)
        assert (await store.keepalive(lease.id)).remaining == 3  # the held-up keep-alive, handled now
        assert (await store.get(b"/i")).count == 1
        await _run_normally(store, clock, 2.999)
        assert (await store.get(b"/i")).count == 1
        await _run_normally(store, clock, 0.001)  # an ordinary lapse still expires it, at exactly its TTL
        assert (await store.get(b"/i")).count == 0
    finally:
        await store.close()


async def test_a_keepalive_handled_first_after_a_stall_is_accepted(tmp_path: Path) -> None:
    """After a stall longer than the TTL, a keep-alive that runs before the expiry pass renews the lease."""
    clock = FakeClock(1000.0)
    store = await SqliteStore.open(tmp_path / "state.db", clock=clock, expiry_interval=0.1)
    try:
        lease = await store.grant(3)
        await _run_normally(store, clock, 1.0)
        clock.advance(5.0)  # due at 1003, stopped until 1006
        assert (await store.keepalive(lease.id)).remaining == 3
        assert await store.expire_due() == []
        await _run_normally(store, clock, 3.0)
        with pytest.raises(LeaseNotFoundError):
            await store.keepalive(lease.id)  # then not renewed for its TTL: gone
    finally:
        await store.close()


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    """After close every call fails with a clear StoreError; closing twice is harmless."""
    store = await SqliteStore.open(tmp_path / "state.db")
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.put(b"/a", b"1")
    with pytest.raises(StoreError, match="closed"):
        store.watch(b"/a")


async def test_bad_options_are_refused(tmp_path: Path) -> None:
    """An unknown synchronous mode or a negative revision is refused with a message naming the fix."""
    with pytest.raises(ValueError, match="FULL, NORMAL"):
        await SqliteStore.open(tmp_path / "state.db", synchronous="OFF")
    store = await SqliteStore.open(tmp_path / "state.db")
    try:
        with pytest.raises(StoreError, match="negative"):
            await store.get(b"/a", revision=-1)
        with pytest.raises(StoreError, match="TTL"):
            await store.grant(0)
    finally:
        await store.close()


WRITER = """
import asyncio, sys
from jishi.store.sqlite import SqliteStore

async def main():
    store = await SqliteStore.open(sys.argv[1])
    lease = await store.grant(30)
    for i in range(200):
        await store.put(b"/k/%d" % i, b"v%d" % i, lease=lease.id if i == 0 else 0)
    print("written", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path, procs: ProcessGroup) -> None:
    """Writes a process had acknowledged are all there after it is killed with SIGKILL (no clean close)."""
    path = tmp_path / "state.db"
    writer = procs.python("writer", "-c", WRITER, str(path))
    for _ in range(200):
        if "written" in writer.log():
            break
        await asyncio.sleep(0.05)
    assert "written" in writer.log(), writer.log()
    writer.signal(signal.SIGKILL)
    writer.popen.wait(timeout=10)
    store = await SqliteStore.open(path)
    try:
        assert await store.revision() == 200
        got = await store.get(b"/k/", prefix=True)
        assert got.count == 200
        lease_id = got.kvs[0].lease if got.kvs[0].key == b"/k/0" else 0
        assert lease_id and (await store.lease_info(lease_id)).keys == [b"/k/0"]
    finally:
        await store.close()
