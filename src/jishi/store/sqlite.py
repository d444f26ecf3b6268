"""`SqliteStore`: the embedded backend of the `Store` interface — a revision log in one SQLite file.

    store = await SqliteStore.open(Path(".jishi/state.db"))
    await store.put(b"/a", b"1")
    async for event in store.watch(b"/", prefix=True, start_revision=1): ...
    await store.close()

How it is built (see `_sqlite_log` for the schema):
- **One connection, on the event loop.** SQLite calls take microseconds (a put is one indexed lookup and two
  inserts), so they run directly on the loop thread; every public method does its SQL without awaiting in
  between, which makes each call atomic with respect to every other coroutine without a lock.
- **WAL, `synchronous=FULL` by default.** A control plane that acknowledges a write must still have it after a
  power loss (etcd fsyncs its WAL before answering too). `NORMAL` survives a crash of the process but may lose the
  last commits on an OS crash or power loss; pass `synchronous="NORMAL"` where that trade is acceptable.
- **Writes** run in one `BEGIN IMMEDIATE` transaction each (a txn included); all changes of it share one new
  revision, and only after COMMIT are the revision and the watchers advanced. A failing op rolls everything back.
- **Leases** live in the pure `jishi.core.leases.LeaseTable`; the `leases` table persists their ids and TTLs.
  A task owned by the store (started by `open`, cancelled and awaited by `close`) revokes leases that are due
  at `clock()`; `expire_due()` runs one such pass on demand, for exact-time tests with a fake clock.
  Deadlines are not persisted: after a reopen every lease restarts its full TTL, as etcd does when a new leader
  takes over, so a holder that is still alive keeps its keys across a restart of the store. In the same spirit a
  *stall* of the store (the process stopped, swapped out, its VM paused, the loop blocked: no look at the leases
  for more than `max(1 s, 5 × expiry_interval)`) does not count against the holders, whose keep-alives are still
  waiting in the sockets: the first lease decision after it — an expiry pass or a keep-alive, whichever runs
  first — postpones every deadline by the excess and logs a warning (`jishi.core.leases.stall`).
- **Watches** read history from the log, then follow live events from a bounded queue; a watcher that falls
  behind catches up from the log (see `_sqlite_watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

from jishi.core.leases import LeaseExistsError, LeaseTable, stall
from jishi.errors import CompactedError, FutureRevisionError, InvalidRequestError, LeaseNotFoundError, StoreError
from jishi.store import _sqlite_log as sql
from jishi.store._sqlite_watch import WatchHub
from jishi.store._sqlite_write import LogWriter
from jishi.store._types import (
    Compare,
    Delete,
    DeleteResult,
    Event,
    Get,
    Lease,
    Op,
    OpResult,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
)
from jishi.store.base import Store

__all__ = ["LeaseExistsError", "SqliteStore"]

log = logging.getLogger(__name__)

HISTORY_PAGE = 512  # revisions read from the log per step of a watch's catch-up


class SqliteStore(Store):
    """The `Store` interface on a SQLite revision log. Open with `await SqliteStore.open(path)`."""

    def __init__(
        self, path: Path, *, clock: Callable[[], float], expiry_interval: float, synchronous: str, watch_queue_size: int
    ) -> None:
        self.path = path
        self._clock = clock
        self._expiry_interval = expiry_interval
        self._conn = sql.connect(str(path), synchronous=synchronous)
        self._revision = sql.read_meta(self._conn, "revision")
        self._compact_revision = sql.read_meta(self._conn, "compact_revision")
        self._leases = LeaseTable(sql.read_meta(self._conn, "lease_high_water"))
        self._leases.restore(sql.load_leases(self._conn), clock())
        self._lease_clock_seen = clock()  # when lease time was last looked at (see `_lease_now`)
        self._hub = WatchHub(watch_queue_size)
        self._expiry: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        expiry_interval: float = 0.1,
        synchronous: str = "FULL",
        watch_queue_size: int = 1024,
    ) -> SqliteStore:
        """Open (creating if needed) the store in the file `path` and start its lease expiry task."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(
            path,
            clock=clock,
            expiry_interval=expiry_interval,
            synchronous=synchronous,
            watch_queue_size=watch_queue_size,
        )
        store._expiry = asyncio.create_task(store._expiry_loop(), name=f"jishi-store-expiry:{path}")
        log.info("opened store %s at revision %d with %d leases", path, store._revision, len(store._leases))
        return store

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- reads -------------------------------------------------------------------------------------------

    async def get(self, key: bytes, *, prefix: bool = False, revision: int = 0, limit: int = 0) -> RangeResult:
        self._check_open()
        if revision < 0 or limit < 0:
            raise InvalidRequestError(
                f"revision and limit must not be negative (got revision={revision}, limit={limit})"
            )
        if revision > self._revision:
            raise FutureRevisionError(f"revision {revision} does not exist yet; the store is at {self._revision}")
        if 0 < revision < self._compact_revision:
            raise CompactedError(revision, self._compact_revision)
        if revision in (0, self._revision):
            kvs = [kv for _, kv in sql.current_rows(self._conn, key, prefix)]
        else:
            kvs = sql.range_at(self._conn, key, prefix, revision)
        count = len(kvs)
        if limit and count > limit:
            return RangeResult(kvs[:limit], self._revision, count, more=True)
        return RangeResult(kvs, self._revision, count)

    async def revision(self) -> int:
        self._check_open()
        return self._revision

    @property
    def compact_revision(self) -> int:
        return self._compact_revision

    # ---- writes ------------------------------------------------------------------------------------------

    async def put(self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False) -> PutResult:
        with self._writing() as w:
            return w.put(key, value, lease, prev_kv=prev_kv)

    async def delete(self, key: bytes, *, prefix: bool = False, prev_kv: bool = False) -> DeleteResult:
        with self._writing() as w:
            return w.delete(key, prefix=prefix, prev_kv=prev_kv)

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> TxnResult:
        with self._writing() as w:
            succeeded = all(w.compare(c) for c in compare)
            results: list[OpResult] = []
            for op in success if succeeded else failure:
                if isinstance(op, Put):
                    results.append(w.put(op.key, op.value, op.lease, prev_kv=op.prev_kv))
                elif isinstance(op, Delete):
                    results.append(w.delete(op.key, prefix=op.prefix, prev_kv=op.prev_kv))
                elif isinstance(op, Get):
                    kvs = [kv for _, kv in sql.current_rows(self._conn, op.key, op.prefix)]
                    results.append(RangeResult(kvs, w.revision, len(kvs)))
                else:
                    raise InvalidRequestError(f"unknown txn operation {op!r}; use Put, Delete or Get")
            return TxnResult(succeeded, w.revision, results)

    async def compact(self, revision: int) -> None:
        self._check_open()
        if revision <= 0:
            raise InvalidRequestError(f"compact needs a revision of at least 1, not {revision}")
        if revision > self._revision:
            raise FutureRevisionError(f"cannot compact to {revision}: the store is at revision {self._revision}")
        if revision <= self._compact_revision:
            raise CompactedError(revision, self._compact_revision)
        with self._transaction():
            removed = sql.compact(self._conn, revision)
            sql.write_meta(self._conn, "compact_revision", revision)
        self._compact_revision = revision
        log.info("compacted %s to revision %d: %d log rows removed", self.path, revision, removed)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._check_open()
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _writing(self) -> Iterator[LogWriter]:
        """A write transaction at one new revision; commits, then advances the revision and tells watchers."""
        with self._transaction():
            writer = LogWriter(self._conn, self._revision, self._leases)
            yield writer
            if writer.events:
                sql.write_meta(self._conn, "revision", writer.revision)
        if writer.events:
            self._revision = writer.revision
            self._hub.publish(writer.revision, writer.events)

    # ---- leases ------------------------------------------------------------------------------------------

    async def grant(self, ttl: float, *, lease_id: int = 0) -> Lease:
        if not ttl > 0:
            raise InvalidRequestError(f"a lease TTL must be a positive number of seconds, not {ttl}")
        if lease_id < 0:
            raise InvalidRequestError(f"a lease id must be positive (or 0 to let the store pick), not {lease_id}")
        lease_id = lease_id or self._leases.next_id()
        if lease_id in self._leases:
            raise LeaseExistsError(lease_id)
        with self._transaction():
            self._conn.execute("INSERT INTO leases (id, ttl) VALUES (?, ?)", (lease_id, float(ttl)))
            sql.write_meta(self._conn, "lease_high_water", max(lease_id, self._leases.high_water))
        state = self._leases.grant(lease_id, ttl, self._lease_now())
        return Lease(state.id, state.ttl, state.ttl)

    async def keepalive(self, lease_id: int) -> Lease:
        """Restart the TTL. The answer carries no keys (ask `lease_info` for them)."""
        self._check_open()
        now = self._lease_now()
        state = self._leases.keepalive(lease_id, now)
        return Lease(state.id, state.ttl, state.remaining(now))

    async def revoke(self, lease_id: int) -> None:
        self._check_open()
        self._leases.get(lease_id)
        self._revoke(lease_id)

    async def lease_info(self, lease_id: int) -> Lease:
        self._check_open()
        now = self._lease_now()
        state = self._leases.get(lease_id)
        if state.deadline <= now:
            raise LeaseNotFoundError(lease_id)  # expired; the next expiry pass deletes its keys
        return Lease(state.id, state.ttl, state.remaining(now), sql.lease_keys(self._conn, lease_id))

    def _revoke(self, lease_id: int) -> None:
        """Delete the lease's keys (all in one revision) and the lease, in one transaction."""
        with self._writing() as w:
            for key in sql.lease_keys(self._conn, lease_id):
                w.delete(key)
            self._conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
        self._leases.revoke(lease_id)

    def _lease_now(self) -> float:
        """`clock()` for a lease decision — after making up for a stall since the previous one (module doc)."""
        now = self._clock()
        gap = now - self._lease_clock_seen
        self._lease_clock_seen = now
        delay = stall(gap, self._expiry_interval)
        if delay > 0 and len(self._leases):
            self._leases.postpone(delay)
            log.warning(
                "the store %s did not run for %.1f s (process stopped, swapped out or its loop blocked); every lease"
                " deadline moves %.1f s later, so that keep-alives sent meanwhile still count",
                self.path,
                gap,
                delay,
            )
        return now

    async def expire_due(self) -> list[int]:
        """Run one expiry pass at `clock()`: make up for a stall since the last lease decision (see the module
        doc), then revoke every lease whose deadline is at or before now; returns their ids.

        The background task calls this every `expiry_interval` seconds or sooner; a test on a fake clock that lets
        time pass normally must call it as often (a longer gap between two calls is a stall)."""
        self._check_open()
        expired = self._leases.due(self._lease_now())
        for lease_id in expired:
            self._revoke(lease_id)
            log.info("lease %d expired; its keys were deleted", lease_id)
        return expired

    async def _expiry_loop(self) -> None:
        delay = self._expiry_interval
        while True:
            await asyncio.sleep(delay)
            delay = self._expiry_interval
            try:
                await self.expire_due()
            except Exception:
                log.exception("lease expiry pass failed on %s; retrying in %.2f s", self.path, delay)
                continue
            deadline = self._leases.next_deadline()
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - self._clock()))

    # ---- watch -------------------------------------------------------------------------------------------

    def watch(self, key: bytes, *, prefix: bool = False, start_revision: int = 0) -> AsyncIterator[Event]:
        """History from `start_revision` (0: the revision after the current one, as of this call — so nothing
        written after `watch()` returns is missed, even before the first `anext`), then live events.

        After `compact(r)` a watch may start at `r` or later, and one from below `r` raises CompactedError — as in
        etcd, whose watch refuses only `start_revision < compact_revision`, and which keeps every change made at
        the compact revision (deletions too) so that a watch from it misses nothing.
        A watcher that falls more than `watch_queue_size` revisions behind catches up from the log transparently;
        if the log it needs was compacted meanwhile it raises CompactedError. Closing the store ends every watch
        with StoreError, naming the revision to resume from."""
        self._check_open()
        if start_revision < 0:
            raise InvalidRequestError(f"a watch cannot start at a negative revision ({start_revision})")
        return self._follow(key, prefix, start_revision or self._revision + 1)

    async def _follow(self, key: bytes, prefix: bool, start: int) -> AsyncIterator[Event]:
        self._check_open()
        if start < self._compact_revision:  # etcd's rule: the compact revision itself can still be watched
            raise CompactedError(start, self._compact_revision)
        watcher = self._hub.register(key, prefix)
        last = start - 1  # the last revision delivered
        catch_up = True
        try:
            while True:
                if watcher.closed:
                    raise StoreError(f"the store was closed; watch again from revision {last + 1} once it is open")
                if catch_up or watcher.lagging:
                    catch_up = watcher.lagging = False
                    watcher.drain()
                    while last < self._revision:
                        if watcher.closed:
                            break
                        if last + 1 < self._compact_revision:
                            raise CompactedError(last + 1, self._compact_revision)
                        upto = min(self._revision, last + HISTORY_PAGE)
                        for event in sql.history(self._conn, key, prefix, last, upto):
                            yield event
                        last = upto
                    continue
                item = await watcher.queue.get()
                if item is None or item[0] <= last:
                    continue
                for event in item[1]:
                    yield event
                last = item[0]
        finally:
            self._hub.unregister(watcher)

    @property
    def watchers(self) -> int:
        """How many watches are registered now."""
        return len(self._hub)

    @property
    def watch_backlog(self) -> int:
        """The most revisions any one watcher has queued and not yet consumed (bounded by `watch_queue_size`)."""
        return self._hub.backlog()

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        self._hub.close()
        self._conn.close()
        log.info("closed store %s at revision %d", self.path, self._revision)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store {self.path} is closed")
