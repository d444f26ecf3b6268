"""The store conformance suite: the promises of `jishi.store.base.Store`, checked through the interface only.

A backend runs it by subclassing `StoreConformance` in a `test_<backend>.py` and providing a `store_factory`
fixture (see `StoreFactory`): `await store_factory(directory, clock)` opens the backend's store kept in
`directory` (calling it again on the same directory reopens it, for durability tests), and
`await store_factory.expire(store)` runs lease expiry at the clock's current time, so that lease tests can
assert exact times with a `FakeClock`. Time passes through `advance(store, seconds)`, which runs expiry at least
every `PASS_EVERY` seconds on the way, as a running store does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from model import ReferenceStore, operations

from jishi.errors import CompactedError, FutureRevisionError, InvalidRequestError, LeaseNotFoundError, StoreError
from jishi.store import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    Event,
    EventType,
    Get,
    KeyValue,
    Put,
    RangeResult,
    Store,
)
from jishi.testing import FakeClock

EQ, NE, LT, GT = CompareOp.EQUAL, CompareOp.NOT_EQUAL, CompareOp.LESS, CompareOp.GREATER
PASS_EVERY = 0.1  # seconds of fake time between two expiry passes while time passes normally


class StoreFactory(Protocol):
    async def __call__(self, directory: Path, clock: FakeClock) -> Store: ...

    async def expire(self, store: Store) -> None: ...


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    """The next `n` events of a watch, or TimeoutError after 5 s."""
    async with asyncio.timeout(5):
        return [await anext(events) for _ in range(n)]


def keys_of(result: RangeResult) -> list[bytes]:
    return [kv.key for kv in result.kvs]


class StoreConformance:
    """Every test here runs against each backend that subclasses this class."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def opener(
        self, store_factory: StoreFactory, tmp_path: Path, clock: FakeClock
    ) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
        """Opens (and reopens) the store in one directory; closes whatever it opened."""
        opened: list[Store] = []

        async def open_store() -> Store:
            opened.append(await store_factory(tmp_path / "store", clock))
            return opened[-1]

        yield open_store
        for store in opened:
            await store.close()

    @pytest.fixture
    async def store(self, opener: Callable[[], Awaitable[Store]]) -> Store:
        return await opener()

    @pytest.fixture
    def advance(self, store_factory: StoreFactory, clock: FakeClock) -> Callable[[Store, float], Awaitable[None]]:
        async def run(store: Store, seconds: float) -> None:
            """Let `seconds` pass with an expiry pass every PASS_EVERY s; the clock ends at exactly now + seconds."""
            end = clock.now + seconds
            while True:
                clock.set(min(end, clock.now + PASS_EVERY))
                await store_factory.expire(store)
                if clock.now >= end:
                    return

        return run

    # ---- put / get ---------------------------------------------------------------------------------------

    async def test_put_get_tracks_revisions_and_versions(self, store: Store) -> None:
        """Each put advances the global revision by one; a key keeps create_revision and counts its version."""
        assert await store.revision() == 0
        assert (await store.put(b"/a", b"1")).revision == 1
        assert (await store.put(b"/b", b"x")).revision == 2
        assert (await store.put(b"/a", b"2")).revision == 3
        got = await store.get(b"/a")
        assert got.kvs == [KeyValue(b"/a", b"2", create_revision=1, mod_revision=3, version=2)]
        assert (got.revision, got.count, got.more) == (3, 1, False)
        assert (await store.get(b"/missing")).kvs == []

    async def test_put_returns_prev_kv_when_asked(self, store: Store) -> None:
        """put(prev_kv=True) returns the value it replaced (None for a new key)."""
        assert (await store.put(b"/a", b"1", prev_kv=True)).prev_kv is None
        prev = (await store.put(b"/a", b"2", prev_kv=True)).prev_kv
        assert prev == KeyValue(b"/a", b"1", 1, 1, 1)

    async def test_recreated_key_starts_a_new_life(self, store: Store) -> None:
        """After a delete, a put creates the key afresh: version 1 and a new create_revision."""
        await store.put(b"/a", b"1")
        await store.put(b"/a", b"2")
        await store.delete(b"/a")
        await store.put(b"/a", b"3")
        assert (await store.get(b"/a")).kvs == [KeyValue(b"/a", b"3", 4, 4, 1)]

    async def test_prefix_range_is_sorted_and_bounded(self, store: Store) -> None:
        """A prefix read returns exactly the keys starting with the prefix, in byte order."""
        for key in [b"/s/b", b"/s/a", b"/s", b"/s0", b"/r", b"/s/a/x"]:
            await store.put(key, b"v")
        assert keys_of(await store.get(b"/s/", prefix=True)) == [b"/s/a", b"/s/a/x", b"/s/b"]
        assert keys_of(await store.get(b"/s", prefix=True)) == [b"/s", b"/s/a", b"/s/a/x", b"/s/b", b"/s0"]
        assert len((await store.get(b"", prefix=True)).kvs) == 6

    async def test_prefix_range_with_0xff_bytes(self, store: Store) -> None:
        """Prefixes ending in 0xff bytes still cover every key under them, and nothing beyond."""
        for key in [b"a\xff", b"a\xff\xff", b"a\xff\x00", b"a\xfe", b"b", b"\xff", b"\xff\xff\x01", b"\xfe"]:
            await store.put(key, b"v")
        assert keys_of(await store.get(b"a\xff", prefix=True)) == [b"a\xff", b"a\xff\x00", b"a\xff\xff"]
        assert keys_of(await store.get(b"\xff", prefix=True)) == [b"\xff", b"\xff\xff\x01"]
        assert keys_of(await store.get(b"a", prefix=True)) == [b"a\xfe", b"a\xff", b"a\xff\x00", b"a\xff\xff"]

    async def test_limit_reports_count_and_more(self, store: Store) -> None:
        """A limited read returns the first keys and says how many there are in all."""
        for i in range(5):
            await store.put(b"/k/%d" % i, b"v")
        got = await store.get(b"/k/", prefix=True, limit=2)
        assert keys_of(got) == [b"/k/0", b"/k/1"]
        assert (got.count, got.more) == (5, True)
        assert (await store.get(b"/k/", prefix=True, limit=5)).more is False

    async def test_read_at_past_revision(self, store: Store) -> None:
        """A read at an old revision sees the state as it was then; the answer carries the current revision."""
        await store.put(b"/a", b"1")  # 1
        await store.put(b"/b", b"1")  # 2
        await store.put(b"/a", b"2")  # 3
        await store.delete(b"/b")  # 4
        at2 = await store.get(b"/", prefix=True, revision=2)
        assert [(kv.key, kv.value) for kv in at2.kvs] == [(b"/a", b"1"), (b"/b", b"1")]
        assert at2.revision == 4
        assert [(kv.key, kv.value) for kv in (await store.get(b"/", prefix=True, revision=3)).kvs] == [
            (b"/a", b"2"),
            (b"/b", b"1"),
        ]
        assert keys_of(await store.get(b"/", prefix=True, revision=4)) == [b"/a"]
        with pytest.raises(FutureRevisionError):
            await store.get(b"/a", revision=5)

    # ---- delete ------------------------------------------------------------------------------------------

    async def test_delete_one_key(self, store: Store) -> None:
        """Deleting a key advances the revision and returns what was deleted; deleting nothing does not."""
        await store.put(b"/a", b"1")
        result = await store.delete(b"/a", prev_kv=True)
        assert (result.revision, result.deleted) == (2, 1)
        assert result.prev_kvs == [KeyValue(b"/a", b"1", 1, 1, 1)]
        noop = await store.delete(b"/a")
        assert (noop.revision, noop.deleted) == (2, 0)
        assert await store.revision() == 2

    async def test_delete_prefix_in_one_revision(self, store: Store) -> None:
        """A prefix delete removes every key under the prefix, and only those, at a single revision."""
        for key in [b"/p/1", b"/p/2", b"/p/3", b"/q/1", b"/p"]:
            await store.put(key, b"v")
        result = await store.delete(b"/p/", prefix=True)
        assert (result.revision, result.deleted) == (6, 3)
        assert keys_of(await store.get(b"/", prefix=True)) == [b"/p", b"/q/1"]

    # ---- txn ---------------------------------------------------------------------------------------------

    async def test_txn_failed_compare_runs_else_branch(self, store: Store) -> None:
        """When a compare fails, only the failure ops run."""
        await store.put(b"/lock", b"held")
        result = await store.txn(
            [Compare(b"/lock", CompareTarget.VERSION, EQ, 0)],
            [Put(b"/lock", b"mine")],
            [Get(b"/lock"), Put(b"/queue", b"me")],
        )
        assert result.succeeded is False
        assert result.revision == 2
        got = result.results[0]
        assert isinstance(got, RangeResult)
        assert got.kvs[0].value == b"held"
        assert (await store.get(b"/lock")).kvs[0].value == b"held"
        assert (await store.get(b"/queue")).kvs[0].value == b"me"

    async def test_txn_writes_share_one_revision(self, store: Store) -> None:
        """Every write of a successful txn lands at the same single revision, and a watch sees both events there."""
        await store.put(b"/x", b"0")
        watch = store.watch(b"/t/", prefix=True, start_revision=1)
        result = await store.txn(
            [Compare(b"/x", CompareTarget.VALUE, EQ, b"0")], [Put(b"/t/a", b"1"), Put(b"/t/b", b"2"), Delete(b"/x")]
        )
        assert (result.succeeded, result.revision) == (True, 2)
        assert await store.revision() == 2
        assert [kv.mod_revision for kv in (await store.get(b"/t/", prefix=True)).kvs] == [2, 2]
        events = await take(watch, 2)
        assert [(e.kv.key, e.kv.mod_revision) for e in events] == [(b"/t/a", 2), (b"/t/b", 2)]
        await watch.aclose()  # type: ignore[attr-defined]

    async def test_txn_compare_targets_and_operators(self, store: Store) -> None:
        """Compares on value, version, create/mod revision and lease with ==, !=, <, > decide the branch."""
        lease = await store.grant(60)
        await store.put(b"/k", b"m")  # 1
        await store.put(b"/k", b"n", lease=lease.id)  # 2: version 2, create 1, mod 2
        cases = [
            (CompareTarget.VALUE, EQ, b"n", True),
            (CompareTarget.VALUE, LT, b"o", True),
            (CompareTarget.VALUE, GT, b"n", False),
            (CompareTarget.VERSION, EQ, 2, True),
            (CompareTarget.VERSION, GT, 2, False),
            (CompareTarget.CREATE, EQ, 1, True),
            (CompareTarget.CREATE, NE, 1, False),
            (CompareTarget.MOD, LT, 3, True),
            (CompareTarget.MOD, GT, 2, False),
            (CompareTarget.LEASE, EQ, lease.id, True),
            (CompareTarget.LEASE, NE, 0, True),
        ]
        for target, op, operand, expected in cases:
            result = await store.txn([Compare(b"/k", target, op, operand)], [], [])
            assert result.succeeded is expected, (target, op, operand)
        missing = [Compare(b"/none", CompareTarget.VERSION, EQ, 0), Compare(b"/none", CompareTarget.MOD, EQ, 0)]
        assert (await store.txn(missing, [])).succeeded
        assert await store.revision() == 2  # txns that wrote nothing do not advance the revision

    async def test_txn_failing_op_writes_nothing(self, store: Store) -> None:
        """An op that fails inside a txn (a put on an unknown lease) rolls back the ops before it."""
        await store.put(b"/a", b"1")
        await store.put(b"/c", b"1")
        with pytest.raises(LeaseNotFoundError):
            await store.txn([], [Put(b"/a", b"2"), Delete(b"/c"), Put(b"/b", b"3", lease=424242)])
        assert await store.revision() == 2
        assert (await store.get(b"/a")).kvs[0].value == b"1"
        assert (await store.get(b"/c")).kvs[0].value == b"1"
        assert (await store.get(b"/b")).kvs == []

    async def test_txn_get_sees_its_own_earlier_writes(self, store: Store) -> None:
        """Ops in a txn run in order: a Get after a Put in the same txn sees the new value."""
        result = await store.txn([], [Put(b"/a", b"1"), Get(b"/a")])
        got = result.results[1]
        assert isinstance(got, RangeResult)
        assert got.kvs == [KeyValue(b"/a", b"1", 1, 1, 1)]

    async def test_txn_writing_a_key_twice_is_refused(self, store: Store) -> None:
        """A txn that changes one key twice is refused as an invalid request and writes nothing."""
        with pytest.raises(InvalidRequestError, match="twice"):
            await store.txn([], [Put(b"/a", b"1"), Put(b"/a", b"2")])
        assert await store.revision() == 0

    async def test_calls_wrong_in_themselves_are_invalid_requests(self, store: Store) -> None:
        """Bad arguments raise InvalidRequestError (never retried), not the plain StoreError of a closed store."""
        await store.put(b"/a", b"1")
        calls = [
            lambda: store.grant(0),
            lambda: store.grant(-1.5),
            lambda: store.grant(5, lease_id=-3),
            lambda: store.get(b"/a", revision=-1),
            lambda: store.get(b"/a", limit=-1),
            lambda: store.compact(0),
            lambda: store.txn([Compare(b"/a", CompareTarget.VALUE, EQ, 1)], []),
            lambda: store.txn([Compare(b"/a", CompareTarget.VERSION, EQ, b"1")], []),
            lambda: anext(store.watch(b"/a", start_revision=-1)),  # type: ignore[arg-type]
        ]
        for i, call in enumerate(calls):
            with pytest.raises(InvalidRequestError):
                await call()
            assert await store.revision() == 1, i
        lease = await store.grant(5)
        with pytest.raises(InvalidRequestError):
            await store.grant(5, lease_id=lease.id)  # taken

    # ---- leases ------------------------------------------------------------------------------------------

    async def test_lease_expiry_deletes_keys_at_exact_time(self, store: Store, advance: Callable) -> None:
        """A lease's keys vanish exactly at its TTL, as DELETE events sharing one revision."""
        lease = await store.grant(10)
        await store.put(b"/l/a", b"1", lease=lease.id)
        await store.put(b"/l/b", b"2", lease=lease.id)
        await store.put(b"/l/c", b"3")
        watch = store.watch(b"/l/", prefix=True)
        await advance(store, 9.999)
        assert len((await store.get(b"/l/", prefix=True)).kvs) == 3
        await advance(store, 0.001)
        assert keys_of(await store.get(b"/l/", prefix=True)) == [b"/l/c"]
        events = await take(watch, 2)
        assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
            (EventType.DELETE, b"/l/a", 4),
            (EventType.DELETE, b"/l/b", 4),
        ]
        assert events[0].prev_kv is not None and events[0].prev_kv.value == b"1"
        with pytest.raises(LeaseNotFoundError):
            await store.keepalive(lease.id)
        await watch.aclose()  # type: ignore[attr-defined]

    async def test_keepalive_extends_the_lease(self, store: Store, advance: Callable) -> None:
        """A keep-alive restarts the full TTL; the lease then expires TTL after the last keep-alive."""
        lease = await store.grant(5)
        await store.put(b"/k", b"v", lease=lease.id)
        await advance(store, 4)
        renewed = await store.keepalive(lease.id)
        assert (renewed.id, renewed.ttl, renewed.remaining) == (lease.id, 5, 5)
        await advance(store, 4.5)
        assert (await store.get(b"/k")).count == 1
        assert (await store.lease_info(lease.id)).remaining == pytest.approx(0.5)
        await advance(store, 0.5)
        assert (await store.get(b"/k")).count == 0

    async def test_revoke_deletes_keys_now(self, store: Store) -> None:
        """Revoking a lease deletes its keys at once; the lease is then unknown."""
        lease = await store.grant(60)
        await store.put(b"/a", b"1", lease=lease.id)
        await store.put(b"/b", b"2", lease=lease.id)
        await store.put(b"/b", b"3")  # a put without a lease detaches the key from it
        await store.revoke(lease.id)
        assert keys_of(await store.get(b"/", prefix=True)) == [b"/b"]
        assert await store.revision() == 4
        for call in (store.revoke, store.keepalive, store.lease_info):
            with pytest.raises(LeaseNotFoundError):
                await call(lease.id)

    async def test_lease_info_and_errors(self, store: Store) -> None:
        """lease_info lists attached keys; unknown leases and bad TTLs are refused with clear errors."""
        lease = await store.grant(30, lease_id=77)
        assert lease.id == 77
        await store.put(b"/z", b"1", lease=77)
        await store.put(b"/y", b"1", lease=77)
        info = await store.lease_info(77)
        assert (info.ttl, info.remaining, info.keys) == (30, 30, [b"/y", b"/z"])
        with pytest.raises(StoreError):
            await store.grant(30, lease_id=77)
        with pytest.raises(LeaseNotFoundError):
            await store.put(b"/x", b"1", lease=78)
        other = await store.grant(1)
        assert other.id not in (0, 77)

    # ---- watch -------------------------------------------------------------------------------------------

    async def test_watch_from_old_revision_across_concurrent_writes(self, store: Store) -> None:
        """A watch from revision 1 yields every event once, in order, across the history/live seam under writes."""
        for i in range(300):
            await store.put(b"/w/%d" % (i % 7), b"%d" % i)

        async def writer() -> None:
            for i in range(300, 600):  # a burst while the watch reads history, then a trickle it sees live
                await store.put(b"/w/%d" % (i % 7), b"%d" % i)
                await asyncio.sleep(0 if i < 400 else 0.001)

        watch = store.watch(b"/w/", prefix=True, start_revision=1)
        task = asyncio.create_task(writer())
        events = []
        async with asyncio.timeout(10):
            async for event in watch:
                events.append(event)
                await asyncio.sleep(0)  # let the writer run while the watch is still in its history
                if len(events) == 600:
                    break
        await task
        assert [e.kv.mod_revision for e in events] == list(range(1, 601))
        assert [e.kv.value for e in events] == [b"%d" % i for i in range(600)]
        assert all(e.type is EventType.PUT for e in events)
        assert events[20].prev_kv is not None and events[20].prev_kv.value == b"13"
        await watch.aclose()  # type: ignore[attr-defined]

    async def test_watch_from_now_and_filtering(self, store: Store) -> None:
        """A watch without start revision sees only later changes of its key or prefix, with prev_kv."""
        await store.put(b"/a", b"old")
        key_watch = store.watch(b"/a")
        prefix_watch = store.watch(b"/b/", prefix=True)
        await store.put(b"/ab", b"x")
        await store.put(b"/b/1", b"y")
        await store.put(b"/a", b"new")
        await store.delete(b"/a")
        events = await take(key_watch, 2)
        assert [(e.type, e.kv.value, e.kv.mod_revision) for e in events] == [
            (EventType.PUT, b"new", 4),
            (EventType.DELETE, b"", 5),
        ]
        assert [e.prev_kv.value if e.prev_kv else None for e in events] == [b"old", b"new"]
        assert [e.kv.key for e in await take(prefix_watch, 1)] == [b"/b/1"]
        await key_watch.aclose()  # type: ignore[attr-defined]
        await prefix_watch.aclose()  # type: ignore[attr-defined]

    async def test_watch_from_the_compact_revision_is_allowed_below_it_refused(self, store: Store) -> None:
        """etcd's boundary: after compact(r) a watch from r replays r on, deletions at r too; below r: Compacted."""
        for i in range(5):
            await store.put(b"/c", b"%d" % i)  # revisions 1-5
        await store.txn([], [Delete(b"/c"), Put(b"/d", b"x")])  # revision 6: a deletion and a put
        for i in range(4):
            await store.put(b"/c", b"%d" % (i + 6))  # revisions 7-10
        await store.compact(6)
        assert store.compact_revision == 6
        with pytest.raises(CompactedError) as info:
            await anext(store.watch(b"/c", start_revision=3))  # type: ignore[call-overload]
        assert (info.value.requested, info.value.compact_revision) == (3, 6)
        assert "the oldest available revision is 6" in str(info.value)
        with pytest.raises(CompactedError):
            await anext(store.watch(b"/", prefix=True, start_revision=5))  # type: ignore[call-overload]
        watch = store.watch(b"/", prefix=True, start_revision=6)
        events = await take(watch, 6)
        assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events[:2]] == [
            (EventType.DELETE, b"/c", 6),
            (EventType.PUT, b"/d", 6),
        ]
        assert [e.kv.mod_revision for e in events[2:]] == [7, 8, 9, 10]
        await watch.aclose()  # type: ignore[attr-defined]
        assert (await store.get(b"/", prefix=True, revision=6)).kvs == [KeyValue(b"/d", b"x", 6, 6, 1)]
        await store.compact(8)  # the next compaction forgets the deletion at 6
        with pytest.raises(CompactedError):
            await anext(store.watch(b"/", prefix=True, start_revision=7))  # type: ignore[call-overload]
        watch = store.watch(b"/", prefix=True, start_revision=8)
        assert [e.kv.mod_revision for e in await take(watch, 3)] == [8, 9, 10]
        await watch.aclose()  # type: ignore[attr-defined]

    # ---- compaction --------------------------------------------------------------------------------------

    async def test_compaction_keeps_current_values(self, store: Store) -> None:
        """Compaction forgets old history only: current values, revision and later history stay readable."""
        await store.put(b"/a", b"1")  # 1
        await store.put(b"/b", b"1")  # 2
        await store.put(b"/a", b"2")  # 3
        await store.delete(b"/b")  # 4
        await store.put(b"/c", b"1")  # 5
        await store.put(b"/c", b"2")  # 6
        await store.compact(5)
        assert await store.revision() == 6
        assert [(kv.key, kv.value, kv.version) for kv in (await store.get(b"/", prefix=True)).kvs] == [
            (b"/a", b"2", 2),
            (b"/c", b"2", 2),
        ]
        assert [(kv.key, kv.value) for kv in (await store.get(b"/", prefix=True, revision=5)).kvs] == [
            (b"/a", b"2"),
            (b"/c", b"1"),
        ]
        with pytest.raises(CompactedError):
            await store.get(b"/a", revision=4)
        with pytest.raises(StoreError):
            await store.compact(99)  # the future
        with pytest.raises(CompactedError):
            await store.compact(5)  # already compacted

    # ---- durability --------------------------------------------------------------------------------------

    async def test_state_survives_reopen(self, opener: Callable, advance: Callable) -> None:
        """Values, revision, compaction point and leases (with their keys) are all there after a reopen."""
        store = await opener()
        lease = await store.grant(10)
        await store.put(b"/a", b"1")
        await store.put(b"/a", b"2")
        await store.put(b"/l", b"x", lease=lease.id)
        await store.put(b"/a", b"3")
        await store.delete(b"/gone")
        await store.compact(2)
        await store.close()
        store = await opener()
        assert await store.revision() == 4
        assert store.compact_revision == 2
        assert (await store.get(b"/a")).kvs == [KeyValue(b"/a", b"3", 1, 4, 3)]
        assert (await store.get(b"/a", revision=2)).kvs[0].value == b"2"
        with pytest.raises(CompactedError):
            await store.get(b"/a", revision=1)
        info = await store.lease_info(lease.id)
        assert (info.ttl, info.remaining, info.keys) == (10, 10, [b"/l"])  # a reopen restarts the full TTL
        await advance(store, 10)
        assert (await store.get(b"/l")).count == 0
        fresh = await store.grant(5)
        assert fresh.id != lease.id

    async def test_watch_resumes_after_reopen(self, opener: Callable) -> None:
        """A watch cut by a restart of the store resumes from its last revision with no gap or duplicate."""
        store = await opener()
        for i in range(5):
            await store.put(b"/r", b"%d" % i)
        watch = store.watch(b"/r", start_revision=1)
        seen = await take(watch, 5)
        await store.close()
        with pytest.raises(StoreError):
            await take(watch, 1)
        store = await opener()
        for i in range(5, 8):
            await store.put(b"/r", b"%d" % i)
        resumed = store.watch(b"/r", start_revision=seen[-1].kv.mod_revision + 1)
        seen += await take(resumed, 3)
        assert [e.kv.value for e in seen] == [b"%d" % i for i in range(8)]
        await resumed.aclose()  # type: ignore[attr-defined]

    # ---- against a reference model -----------------------------------------------------------------------

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(ops=operations)
    def test_matches_reference_model(
        self, store_factory: StoreFactory, tmp_path_factory: pytest.TempPathFactory, ops: list
    ) -> None:
        """Random puts, deletes and txns leave the store and a dict model with equal state, revisions and history."""
        asyncio.run(self._run_model(store_factory, tmp_path_factory.mktemp("model"), ops))

    @staticmethod
    async def _run_model(store_factory: StoreFactory, directory: Path, ops: list) -> None:
        store, model = await store_factory(directory, FakeClock()), ReferenceStore()
        try:
            for op in ops:
                if op[0] == "put":
                    assert (await store.put(op[1], op[2])).revision == model.put(op[1], op[2])
                elif op[0] == "delete":
                    assert (await store.delete(op[1], prefix=op[2])).deleted == model.delete(op[1], op[2])
                else:
                    result = await store.txn(op[1], op[2], op[3])
                    assert result.succeeded == model.txn(op[1], op[2], op[3])
                    assert result.revision == model.revision
                assert await store.revision() == model.revision
                assert (await store.get(b"", prefix=True)).kvs == sorted(model.kvs.values(), key=lambda kv: kv.key)
            for rev in range(1, model.revision + 1):
                past = (await store.get(b"", prefix=True, revision=rev)).kvs
                assert past == sorted(model.snapshots[rev].values(), key=lambda kv: kv.key), rev
            # Replaying the whole history through a watch rebuilds the current state.
            await store.put(b"~end", b"")
            replay: dict[bytes, KeyValue] = {}
            watch = store.watch(b"", prefix=True, start_revision=1)
            while (event := await asyncio.wait_for(anext(watch), 5)).kv.key != b"~end":
                if event.type is EventType.PUT:
                    replay[event.kv.key] = event.kv
                else:
                    del replay[event.kv.key]
            await watch.aclose()  # type: ignore[attr-defined]
            assert replay == model.kvs
        finally:
            await store.close()
