"""Live fan-out of committed changes to watchers, with a bound on what a slow watcher can hold.

Every watcher owns a bounded queue of committed revisions (each a list of the events that match it). After a
write commits, the store calls `WatchHub.publish(revision, events)`, which appends to the queue of every
watcher whose key or prefix matches — without waiting, so a writer is never held up by a reader.

A watcher whose queue is full is marked *lagging* and receives nothing more from the hub: its consumer, on its
next step, drops what is queued and catches up by reading the revision log from the last revision it yielded,
then resumes from the queue, skipping revisions it has already read. So a slow watcher costs at most
`queue_size` revisions of memory, never blocks a writer, and still sees every event in order — unless the log
it needs was compacted meanwhile, in which case it gets `CompactedError` and can resume from a newer revision.

All of this runs on the event loop thread of the store; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from jishi.store._types import Event

log = logging.getLogger(__name__)

Batch = tuple[int, list[Event]]


class Watcher:
    """One registered watch: what it matches, its bounded queue and its flags."""

    __slots__ = ("closed", "key", "lagging", "prefix", "queue")

    def __init__(self, key: bytes, prefix: bool, queue_size: int) -> None:
        self.key = key
        self.prefix = prefix
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=queue_size)
        self.lagging = False  # the hub dropped events for it: catch up from the log
        self.closed = False  # the store closed: stop

    def matches(self, key: bytes) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key

    def drain(self) -> None:
        """Drop everything queued (the consumer is about to re-read it from the log)."""
        while not self.queue.empty():
            self.queue.get_nowait()

    def wake(self) -> None:
        """Make a consumer blocked on the queue look at the flags again."""
        # A full queue means its consumer is not blocked on it: it will see the flags on its next step.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class WatchHub:
    """The set of live watchers of one store."""

    def __init__(self, queue_size: int) -> None:
        if queue_size < 1:
            raise ValueError(f"a watch queue needs room for at least one revision, not {queue_size}")
        self.queue_size = queue_size
        self._watchers: set[Watcher] = set()

    def __len__(self) -> int:
        return len(self._watchers)

    def backlog(self) -> int:
        """The most revisions queued for any one watcher (never more than `queue_size`)."""
        return max((w.queue.qsize() for w in self._watchers), default=0)

    def register(self, key: bytes, prefix: bool) -> Watcher:
        watcher = Watcher(key, prefix, self.queue_size)
        self._watchers.add(watcher)
        return watcher

    def unregister(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def publish(self, revision: int, events: list[Event]) -> None:
        """Hand the events of one committed revision to every watcher they match."""
        for watcher in self._watchers:
            if watcher.lagging or watcher.closed:
                continue
            mine = [e for e in events if watcher.matches(e.kv.key)]
            if not mine:
                continue
            try:
                watcher.queue.put_nowait((revision, mine))
            except asyncio.QueueFull:
                log.info(
                    "a watcher of %r fell %d revisions behind; it will catch up from the log",
                    watcher.key,
                    watcher.queue.qsize(),
                )
                watcher.lagging = True

    def close(self) -> None:
        """Tell every watcher that the store is closing."""
        for watcher in self._watchers:
            watcher.closed = True
            watcher.wake()
        self._watchers.clear()
