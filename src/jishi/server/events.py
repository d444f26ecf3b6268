"""The event log over HTTP, restart requests, and the retention sweeper.

    GET  /v1/events?since=&limit=&kind=&subject=     {"events": [EventRecord, ...]}   oldest first
    GET  /v1/events?follow=true&since=&kind=&subject= NDJSON: one EventRecord per line, as they are stored
    POST /v1/events                                   store one EventRecord (its id is assigned) → the record
    POST /v1/instances/{service}/{id}/restart         202 {"restarting": id, "requested_at"}; its agent restarts it
    DELETE /v1/instances/{service}/{id}/restart       the request was carried out (the agent clears it)

A follow stream sends the events after `since` first (none without it), then each new one; when nothing
happens for `heartbeat` seconds it sends `{"heartbeat": <unix time>}` so the client can tell a quiet stream
from a dead one. `EventStreams.close_all()` ends every open stream; the server calls it when it stops.
The queue, pump task (the store watch), batching and shutdown are `jishi.server.streams.LineStreams`'.

`EventSweeper` applies retention (at most `max_events`, none older than `max_age`) and drops ended silences
every `interval` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from jishi.api import wire
from jishi.errors import ControlPlaneError
from jishi.registry import Registry
from jishi.registry.model import EventRecord
from jishi.registry.operations import DEFAULT_MAX_AGE, DEFAULT_MAX_EVENTS
from jishi.server.streams import LineStreams

__all__ = ["EventStreams", "EventSweeper", "router"]

log = logging.getLogger(__name__)


class EventStreams(LineStreams[EventRecord]):
    """The open follow streams of one server."""

    def __init__(self, *, heartbeat: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__("events", heartbeat=heartbeat)
        self._clock = clock

    def lines(
        self, registry: Registry, since: str | None, kind: str | None, subject: str | None
    ) -> AsyncIterator[bytes]:
        """The body of one follow response: the records after `since` matching `kind`/`subject`, then new ones."""
        return self.stream(
            lambda: registry.follow_events(since, kind=kind, subject=subject),
            _record_line,
            self._heartbeat,
            f"since={since} kind={kind} subject={subject}",
        )

    async def _heartbeat(self) -> bytes:
        return json.dumps({"heartbeat": self._clock()}).encode() + b"\n"


def _record_line(record: EventRecord) -> bytes:
    return record.model_dump_json().encode() + b"\n"


class EventSweeper:
    """Retention of events and ended silences, every `interval` seconds (an owned task runs `run()`)."""

    def __init__(
        self,
        registry: Registry,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_age: float = DEFAULT_MAX_AGE,
        interval: float = 5.0,
    ) -> None:
        self.registry, self.max_events, self.max_age, self.interval = registry, max_events, max_age, interval

    async def sweep_once(self) -> int:
        removed = await self.registry.sweep_events(max_events=self.max_events, max_age=self.max_age)
        await self.registry.sweep_silences()
        return removed

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("sweeping old events failed; trying again in %.1f s", self.interval)
            await asyncio.sleep(self.interval)


# ---- the router ---------------------------------------------------------------------------------------------


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _streams(request: Request) -> EventStreams:
    streams: EventStreams | None = getattr(request.app.state, "event_streams", None)
    if streams is None:
        streams = request.app.state.event_streams = EventStreams()
    return streams


Reg = Annotated[Registry, Depends(_registry)]
router = APIRouter(prefix="/v1")


@router.get(
    "/events",
    tags=["events"],
    summary="What happened: instance starts, exits and restarts, health changes, scaling, config, alerts",
    description="Oldest first: the newest `limit` matching events, or the first `limit` after the id `since`. "
    "`kind` matches itself and its dotted children (`instance` → `instance.exited`), `subject` itself and what "
    "is under it (`catalog` → `catalog/catalog-1`). With `follow=true` the answer is a stream of "
    'newline-delimited EventRecord JSON (the events after `since`, then new ones; `{"heartbeat": time}` lines '
    "when idle).",
    response_model=wire.EventListReply,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def list_events(
    request: Request,
    registry: Reg,
    since: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    kind: str | None = None,
    subject: str | None = None,
    follow: bool = False,
) -> Response:
    if not follow:
        events = await registry.events(since=since, limit=limit, kind=kind, subject=subject)
        return JSONResponse(wire.EventListReply(events=events).model_dump(mode="json"))
    streams = _streams(request)
    if streams.closing:
        raise ControlPlaneError(
            "the control plane is shutting down; follow again shortly", code="unavailable", status=503
        )
    return StreamingResponse(
        streams.lines(registry, since, kind, subject),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/events", tags=["events"], status_code=201, summary="Record an event (its id is assigned here)")
async def record_event(registry: Reg, event: EventRecord) -> EventRecord:
    return await registry.record_event(event)


@router.post(
    "/instances/{service}/{instance_id}/restart",
    tags=["instances"],
    status_code=202,
    summary="Restart an instance: its agent stops it gracefully and starts it again in the same slot",
)
async def request_restart(
    registry: Reg, service: str, instance_id: str, body: wire.RestartBody | None = None
) -> dict[str, str | float]:
    request = await registry.request_restart(service, instance_id, body.reason if body else "")
    return {"restarting": instance_id, "requested_at": request.requested_at}


@router.delete(
    "/instances/{service}/{instance_id}/restart",
    tags=["instances"],
    status_code=204,
    summary="Clear a restart request (the agent did it)",
)
async def clear_restart(registry: Reg, service: str, instance_id: str) -> Response:
    await registry.clear_restart(service, instance_id)
    return Response(status_code=204)
