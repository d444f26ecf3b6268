"""The store interface: a revisioned key-value store with the etcd v3 model.

Every backend (SQLite today, etcd for HA) implements `Store`; the conformance suite in
`tests/store/conformance.py` is written against this interface only and runs against each backend.

Guarantees a backend must give:
- every write (put, delete that removed something, txn that wrote) advances the global revision by exactly one;
  a txn's writes all share that one revision and are atomic;
- `watch(key, prefix, start_revision)` yields every event with revision ≥ start_revision, in revision order,
  with no gaps and no duplicates, first the history (if still kept) and then live events; if start_revision is
  compacted away it raises `CompactedError` (carrying the compact revision) before yielding anything;
- a lease that is not kept alive expires `ttl` seconds after its grant or last keep-alive; expiry (or revoke)
  deletes every key attached to it, each deletion being a DELETE event in one revision;
- state (keys, revision, leases) survives a close and reopen of the backend; on reopen every lease starts a
  fresh full TTL (as etcd does on a leader change), so a restart never expires a lease early.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence

from jishi.store._types import Compare, DeleteResult, Event, Lease, Op, PutResult, RangeResult, TxnResult


class Store(abc.ABC):
    """Async, revisioned key-value store. All methods may raise `jishi.errors.StoreError` subclasses."""

    @abc.abstractmethod
    async def get(self, key: bytes, *, prefix: bool = False, revision: int = 0, limit: int = 0) -> RangeResult:
        """Read one key, or every key starting with `key` if `prefix`. `revision` > 0 reads at that revision."""

    @abc.abstractmethod
    async def put(self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False) -> PutResult:
        """Write a key; attach it to `lease` (0: none). Raises LeaseNotFoundError for an unknown lease."""

    @abc.abstractmethod
    async def delete(self, key: bytes, *, prefix: bool = False, prev_kv: bool = False) -> DeleteResult:
        """Delete a key (or a prefix). Deleting nothing does not advance the revision."""

    @abc.abstractmethod
    async def txn(self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> TxnResult:
        """If every compare holds, run `success`, else `failure`; atomically, at one revision."""

    @abc.abstractmethod
    async def grant(self, ttl: float, *, lease_id: int = 0) -> Lease:
        """Grant a lease of `ttl` seconds (lease_id 0: the store picks one)."""

    @abc.abstractmethod
    async def keepalive(self, lease_id: int) -> Lease:
        """Restart the lease's TTL. Raises LeaseNotFoundError if it expired or was revoked."""

    @abc.abstractmethod
    async def revoke(self, lease_id: int) -> None:
        """End the lease now, deleting its keys. Raises LeaseNotFoundError if unknown."""

    @abc.abstractmethod
    async def lease_info(self, lease_id: int) -> Lease:
        """TTL, remaining time and attached keys of a lease."""

    @abc.abstractmethod
    def watch(self, key: bytes, *, prefix: bool = False, start_revision: int = 0) -> AsyncIterator[Event]:
        """Events on `key` (or the prefix) from `start_revision` (0: from now on), forever, until the caller
        stops iterating (closing the iterator releases the watch)."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget history before `revision`; reads and watches below it raise CompactedError afterwards."""

    @property
    @abc.abstractmethod
    def compact_revision(self) -> int:
        """The highest revision compacted so far (0 if none)."""

    @abc.abstractmethod
    async def revision(self) -> int:
        """The current global revision."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop background work (lease expiry) and release resources. Safe to call twice."""
