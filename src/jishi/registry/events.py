"""The event log: ids that sort by time, the query rules, retention, and a non-blocking sender.

Events live at `/jishi/events/<id>` (`EventRecord` JSON). An id is the 16-digit unix time in microseconds at
which the control plane stored the event, then 4 hex digits (random, so two servers never collide):

    1763900000123456a3f9

so the store's key order is time order, and "events after X" is "keys greater than X". The id is stamped when
the event is stored, not when it happened (`EventRecord.time`): an event reported late still sorts after every
id a reader has already seen, so polling with `since=<last id>` never misses one.

Queries (`select`): `kind` matches itself and its dotted children (`instance` matches `instance.exited`),
`subject` matches itself and what is under it (`catalog` matches `catalog/catalog-3f9a1c-0`). Without
`since` a query answers the newest `limit` matches; with it, the first `limit` after it; oldest first both ways.

Retention (`expired`): at most `max_events`, none older than `max_age` seconds (by id time).

`EventIndex` is the server's in-memory copy of the log, kept current by following the store's watch, so that
queries (the dashboard asks every second) and retention never read the whole prefix from the store.

`EventBuffer` is how agents and the alert evaluator emit: `emit()` never blocks and never raises; one owned
task sends the buffered events in order to anything with `record_event` (a `ControlPlane`), retrying failures
with a growing pause and logging them. When the buffer is full the oldest unsent events are dropped (logged).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NoReturn, Protocol

from jishi.registry.follow import follow
from jishi.registry.model import EVENTS, EventRecord
from jishi.store import Event, EventType, KeyValue

if TYPE_CHECKING:
    from jishi.registry.protocol import ControlPlane

__all__ = [
    "EventBuffer",
    "EventIds",
    "EventIndex",
    "EventSink",
    "event_key",
    "expired",
    "id_time",
    "matches",
    "select",
]

log = logging.getLogger(__name__)

ID_DIGITS = 16


def event_key(event_id: str) -> str:
    return EVENTS + event_id


def id_time(event_id: str) -> float:
    """The unix time (seconds) an id was stamped at; 0.0 for an id that is not one of ours."""
    head = event_id[:ID_DIGITS]
    return int(head) / 1e6 if head.isdigit() else 0.0


class EventIds:
    """Makes ids strictly increasing within one process, even when the clock stands still or steps back."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._last = 0
        self._rng = rng or random.Random()

    def next(self, now: float) -> str:
        micros = max(int(now * 1e6), self._last + 1)
        self._last = micros
        return f"{micros:0{ID_DIGITS}d}{self._rng.getrandbits(16):04x}"


def matches(event: EventRecord, kind: str | None, subject: str | None) -> bool:
    if kind and event.kind != kind and not event.kind.startswith(kind + "."):
        return False
    return not subject or event.subject == subject or event.subject.startswith(subject + "/")


def select(
    events: Iterable[EventRecord],
    *,
    since: str | None = None,
    limit: int = 100,
    kind: str | None = None,
    subject: str | None = None,
) -> list[EventRecord]:
    """The events of a query (see the module doc) from `events` in id order; oldest first."""
    if limit <= 0:
        return []
    found = [e for e in events if (since is None or e.id > since) and matches(e, kind, subject)]
    return found[:limit] if since is not None else found[-limit:]


def expired(ids: Sequence[str], now: float, *, max_events: int, max_age: float) -> list[str]:
    """The ids (sorted ascending) that retention removes at `now`: too old, or beyond the newest `max_events`."""
    cutoff = f"{max(0, int((now - max_age) * 1e6)):0{ID_DIGITS}d}"
    too_many = max(0, len(ids) - max_events)
    return [event_id for i, event_id in enumerate(ids) if i < too_many or event_id < cutoff]


class EventIndex:
    """The event log in memory: ids in order and their records. `await run(cp)` keeps it equal to the store
    (snapshot, then watch); `synced` says whether it may answer queries."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._records: dict[str, EventRecord] = {}
        self.synced = False

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> list[str]:
        return list(self._ids)

    def add(self, record: EventRecord) -> None:
        if record.id in self._records:
            return
        self._records[record.id] = record
        if not self._ids or record.id > self._ids[-1]:
            self._ids.append(record.id)
        else:
            bisect.insort(self._ids, record.id)

    def remove(self, event_id: str) -> None:
        if self._records.pop(event_id, None) is not None:
            i = bisect.bisect_left(self._ids, event_id)
            del self._ids[i]

    def reset(self, revision: int, kvs: list[KeyValue]) -> None:
        self._ids, self._records = [], {}
        for kv in kvs:
            record = _parse(kv)
            if record is not None:
                self.add(record)
        self.synced = True

    def apply(self, event: Event) -> None:
        if event.type is EventType.DELETE:
            self.remove(event.kv.key.decode()[len(EVENTS) :])
        elif (record := _parse(event.kv)) is not None:
            self.add(record)

    def select(
        self, *, since: str | None = None, limit: int = 100, kind: str | None = None, subject: str | None = None
    ) -> list[EventRecord]:
        """As `select()` over the whole log, reading only as far as it needs: from `since` forwards, or from the
        newest backwards."""
        if limit <= 0:
            return []
        if since is None:
            found: list[EventRecord] = []
            for event_id in reversed(self._ids):
                record = self._records[event_id]
                if matches(record, kind, subject):
                    found.append(record)
                    if len(found) == limit:
                        break
            return found[::-1]
        out: list[EventRecord] = []
        for event_id in self._ids[bisect.bisect_right(self._ids, since) :]:
            record = self._records[event_id]
            if matches(record, kind, subject):
                out.append(record)
                if len(out) == limit:
                    break
        return out

    async def run(self, cp: ControlPlane) -> NoReturn:
        """Follow the log on `cp` until cancelled; not `synced` while it cannot."""

        def lost(exc: BaseException) -> None:
            self.synced = False

        try:
            await follow(cp, EVENTS, on_snapshot=self.reset, on_event=self.apply, on_error=lost, name="event log")
        finally:
            self.synced = False


def _parse(kv: KeyValue) -> EventRecord | None:
    try:
        return EventRecord.model_validate_json(kv.value)
    except ValueError as exc:
        log.error("ignoring an invalid event record at %s: %s", kv.key.decode(errors="replace"), exc)
        return None


class EventSink(Protocol):
    async def record_event(self, event: EventRecord) -> EventRecord: ...


class EventBuffer:
    """Buffered, ordered, non-blocking delivery of events to a sink (see the module doc). `await run()` in an
    owned task; `await flush(within)` at shutdown sends what is left, for a bounded time."""

    def __init__(
        self,
        sink: EventSink,
        *,
        maxlen: int = 1000,
        retry: tuple[float, float] = (0.2, 5.0),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sink, self._retry, self._sleep = sink, retry, sleep
        self._queue: collections.deque[EventRecord] = collections.deque(maxlen=maxlen)
        self._wake = asyncio.Event()
        self._failing = False
        self.dropped = 0
        self.sent = 0

    def __len__(self) -> int:
        return len(self._queue)

    def emit(self, event: EventRecord) -> None:
        """Queue one event for sending; never blocks, never raises."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("event buffer full: dropped the oldest unsent event (%d dropped so far)", self.dropped)
        self._queue.append(event)
        self._wake.set()

    async def run(self) -> None:
        """Send queued events in order until cancelled; a failed send is retried after a growing pause."""
        pause = self._retry[0]
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if await self._send_one():
                    pause = self._retry[0]
                    continue
                await self._sleep(pause)
                pause = min(pause * 2, self._retry[1])

    async def _send_one(self) -> bool:
        event = self._queue[0]
        try:
            await self._sink.record_event(event)
        except Exception as exc:
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(level, "cannot send event %s %s yet (%s); %d waiting", event.kind, event.subject, exc, len(self))
            self._failing = True
            return False
        if self._queue and self._queue[0] is event:
            self._queue.popleft()
        self.sent += 1
        if self._failing:
            log.info("events reach the control plane again")
            self._failing = False
        return True

    async def flush(self, within: float = 1.0) -> bool:
        """Try to send everything queued, for at most `within` seconds; True when nothing is left."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self._queue and await self._send_one():
                    pass
        if self._queue:
            log.warning("%d events could not be sent before shutdown", len(self._queue))
        return not self._queue
