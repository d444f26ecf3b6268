"""The operational records of the registry: events, restart requests, the alerting settings and silences.

A mixin of `Registry` (it uses the registry's `store` and `_wall`), kept apart so each module holds one idea:
`registry.py` is the desired and live state of the cluster, this is what operators and alerting add to it.

- events: `record_event` stamps an id (`jishi.registry.events`) and stores the record; `events(...)` queries
  them; `sweep_events` applies retention. With an `event_index` that is synced (the server runs one) queries
  and retention are answered from memory; without, they read every key of the prefix.
- restart requests: `request_restart` puts `/jishi/restarts/<service>/<id>` under the instance's own lease (so
  it goes when the instance's agent goes); the agent running the instance restarts it and `clear_restart`s it.
- alerting settings: one JSON document at `/jishi/config/alerting` (`jishi.alerting.AlertingConfig`), written
  by `jishi up` (only when it changed), followed by the server's alert evaluator.
- silences: `jishi.alerting.SilenceSpec` JSON at `/jishi/silences/<id>`; `sweep_silences` drops ended ones.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from jishi.errors import NotFoundError, StoreError
from jishi.registry import model as m
from jishi.registry.events import EventIds, EventIndex, event_key, expired, matches, select
from jishi.registry.model import EventRecord, RestartRequest
from jishi.store import Delete, EventType, KeyValue, Op, Put, Store

if TYPE_CHECKING:
    from jishi.alerting.rules import AlertingConfig, SilenceSpec

__all__ = ["Operations"]

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 10_000
DEFAULT_MAX_AGE = 7 * 86400.0


def _event(kv: KeyValue) -> EventRecord | None:
    try:
        return EventRecord.model_validate_json(kv.value)
    except ValidationError as exc:
        log.error("ignoring an invalid event record at %s: %s", kv.key.decode(errors="replace"), exc)
        return None


class Operations:
    store: Store
    _wall: Callable[[], float]
    _event_ids: EventIds
    event_index: EventIndex | None

    # ---- events ---------------------------------------------------------------------------------------

    def _stamp(self, event: EventRecord) -> EventRecord:
        return event.model_copy(update={"id": self._event_ids.next(self._wall())})

    def _event_put(self, event: EventRecord) -> tuple[EventRecord, Put]:
        """The event with its id, and the Put that stores it (for a txn of its own or of the change it tells)."""
        stamped = self._stamp(event)
        return stamped, Put(event_key(stamped.id).encode(), stamped.model_dump_json().encode())

    def _indexed(self, event: EventRecord) -> None:
        """A stored event goes into the index at once (its watch event follows; adding is idempotent)."""
        if self.event_index is not None and self.event_index.synced:
            self.event_index.add(event)

    async def record_event(self, event: EventRecord) -> EventRecord:
        """Store `event` under a new id (whatever id it carried); returns it with that id."""
        stamped, put = self._event_put(event)
        await self.store.put(put.key, put.value)
        self._indexed(stamped)
        return stamped

    async def record_events(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        """Store several events in one transaction (one revision, one disk sync); returns them with their ids."""
        stamped: list[EventRecord] = []
        ops: list[Op] = []
        for event in events:
            record, put = self._event_put(event)
            stamped.append(record)
            ops.append(put)
        if ops:
            await self.store.txn([], ops)
            for record in stamped:
                self._indexed(record)
        return stamped

    async def events(
        self,
        *,
        since: str | None = None,
        limit: int = 100,
        kind: str | None = None,
        subject: str | None = None,
    ) -> list[EventRecord]:
        """Events oldest first: the newest `limit` matches, or the first `limit` after the id `since`."""
        if self.event_index is not None and self.event_index.synced:
            return self.event_index.select(since=since, limit=limit, kind=kind, subject=subject)
        kvs = (await self.store.get(m.EVENTS.encode(), prefix=True)).kvs
        if since is not None:
            after = event_key(since).encode()
            kvs = [kv for kv in kvs if kv.key > after]
        if kind is None and subject is None:  # decode only what is answered
            kvs = kvs[:limit] if since is not None else kvs[-limit:] if limit > 0 else []
        records = [e for e in map(_event, kvs) if e is not None]
        return select(records, since=since, limit=limit, kind=kind, subject=subject)

    async def follow_events(
        self, since: str | None = None, *, kind: str | None = None, subject: str | None = None
    ) -> AsyncIterator[EventRecord]:
        """Every matching event after the id `since` (None: from now on), then each new one as it is stored;
        forever, until the caller stops iterating. No event is missed between the backlog and the watch."""
        result = await self.store.get(m.EVENTS.encode(), prefix=True)
        if since is not None:
            after = event_key(since).encode()
            for record in map(_event, (kv for kv in result.kvs if kv.key > after)):
                if record is not None and matches(record, kind, subject):
                    yield record
        watch = self.store.watch(m.EVENTS.encode(), prefix=True, start_revision=result.revision + 1)
        try:
            async for change in watch:
                if change.type is EventType.PUT and (record := _event(change.kv)) and matches(record, kind, subject):
                    yield record
        finally:
            aclose = getattr(watch, "aclose", None)
            if aclose is not None:
                await aclose()

    async def sweep_events(
        self, now: float | None = None, *, max_events: int = DEFAULT_MAX_EVENTS, max_age: float = DEFAULT_MAX_AGE
    ) -> int:
        """Delete the events retention no longer keeps at `now` (default: the wall clock); returns how many."""
        now = self._wall() if now is None else now
        if self.event_index is not None and self.event_index.synced:
            ids = self.event_index.ids()
        else:
            cut = len(m.EVENTS)
            ids = [kv.key.decode()[cut:] for kv in (await self.store.get(m.EVENTS.encode(), prefix=True)).kvs]
        doomed = expired(ids, now, max_events=max_events, max_age=max_age)
        if doomed:
            await self.store.txn([], [Delete(event_key(i).encode()) for i in doomed])
            if self.event_index is not None:
                for event_id in doomed:
                    self.event_index.remove(event_id)
            log.info("event retention removed %d events (%d kept)", len(doomed), len(ids) - len(doomed))
        return len(doomed)

    # ---- restart requests -----------------------------------------------------------------------------

    async def request_restart(self, service: str, instance_id: str, reason: str = "") -> RestartRequest:
        """Ask the agent running the instance to restart it. NotFoundError if there is no such instance."""
        kvs = (await self.store.get(m.instance_key(service, instance_id).encode())).kvs
        if not kvs:
            raise NotFoundError(f"instance {instance_id} of service {service!r} is not registered")
        request = RestartRequest(service=service, instance=instance_id, requested_at=self._wall(), reason=reason)
        event, put = self._event_put(
            EventRecord(
                time=request.requested_at,
                kind="instance.restart_requested",
                subject=f"{service}/{instance_id}",
                reason=f"restart requested{': ' + reason if reason else ''}",
            )
        )
        key = m.restart_key(service, instance_id).encode()
        await self.store.txn([], [Put(key, request.model_dump_json().encode(), lease=kvs[0].lease), put])
        self._indexed(event)
        log.info("restart of %s/%s requested (event %s)", service, instance_id, event.id)
        return request

    async def clear_restart(self, service: str, instance_id: str) -> None:
        """The restart request was carried out (or cannot be): forget it. Clearing none is not an error."""
        await self.store.delete(m.restart_key(service, instance_id).encode())

    # ---- alerting settings ----------------------------------------------------------------------------

    async def put_alerting(self, config: AlertingConfig | Mapping[str, Any]) -> bool:
        """Store the alerting settings (validated); False when they were already exactly these."""
        from jishi.alerting.rules import AlertingConfig

        valid = config if isinstance(config, AlertingConfig) else AlertingConfig.model_validate(config)
        value = valid.model_dump_json(by_alias=True).encode()
        key = m.ALERTING_CONFIG.encode()
        kvs = (await self.store.get(key)).kvs
        if kvs and kvs[0].value == value:
            return False
        await self.store.put(key, value)
        log.info("alerting settings updated (%d rules of their own)", len(valid.rules))
        return True

    async def get_alerting(self) -> AlertingConfig | None:
        """The stored alerting settings; None when none were ever stored."""
        from jishi.alerting.rules import AlertingConfig

        kvs = (await self.store.get(m.ALERTING_CONFIG.encode())).kvs
        if not kvs:
            return None
        try:
            return AlertingConfig.model_validate_json(kvs[0].value)
        except ValidationError as exc:
            raise StoreError(f"the alerting settings at {m.ALERTING_CONFIG} are not valid: {exc}") from exc

    # ---- silences -------------------------------------------------------------------------------------

    async def add_silence(
        self,
        matchers: Mapping[str, str] | str,
        *,
        duration: float,
        comment: str = "",
        created_by: str = "",
        starts_at: float | None = None,
    ) -> SilenceSpec:
        """Silence alerts matching `matchers` (a mapping: label = value; or text as in `service="x"`)."""
        from jishi.alerting.rules import SilenceSpec

        if duration <= 0:
            raise ValueError(f"a silence needs a positive duration (got {duration})")
        if not isinstance(matchers, str):
            if not matchers:
                raise ValueError('a silence needs at least one matcher, e.g. {"service": "catalog"}')
            matchers = ",".join(f"{k}={json.dumps(v)}" for k, v in matchers.items())
        start = self._wall() if starts_at is None else starts_at
        spec = SilenceSpec(
            id=uuid.uuid4().hex[:12],
            matchers=matchers,
            starts_at=start,
            ends_at=start + duration,
            comment=comment,
            created_by=created_by,
        )
        spec.to_silence()  # raises ValueError for a bad regex, before anything is stored
        await self.store.put((m.SILENCES + spec.id).encode(), spec.model_dump_json().encode())
        log.info("silence %s of %s for %.0f s: %s", spec.id, matchers, duration, comment or "no comment")
        return spec

    async def list_silences(self) -> list[SilenceSpec]:
        from jishi.alerting.rules import SilenceSpec

        out = []
        for kv in (await self.store.get(m.SILENCES.encode(), prefix=True)).kvs:
            try:
                out.append(SilenceSpec.model_validate_json(kv.value))
            except ValidationError as exc:
                log.error("ignoring an invalid silence at %s: %s", kv.key.decode(errors="replace"), exc)
        return sorted(out, key=lambda s: (s.starts_at, s.id))

    async def remove_silence(self, silence_id: str) -> None:
        if (await self.store.delete((m.SILENCES + silence_id).encode())).deleted == 0:
            raise NotFoundError(f"silence {silence_id!r} does not exist")

    async def sweep_silences(self, now: float | None = None) -> int:
        """Delete the silences that have ended by `now`; returns how many."""
        now = self._wall() if now is None else now
        ops: list[Op] = [Delete((m.SILENCES + s.id).encode()) for s in await self.list_silences() if s.ends_at <= now]
        if ops:
            await self.store.txn([], ops)
        return len(ops)
