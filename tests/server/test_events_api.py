"""The event log and restart requests over HTTP: list, record, follow (NDJSON, resuming by id), restart → 202/404."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jishi.api import HttpControlPlane
from jishi.errors import NotFoundError
from jishi.registry import Instance, Registry, ServiceSpec
from jishi.registry.model import EventRecord
from jishi.server import ControlPlaneServer, create_app
from jishi.store.sqlite import SqliteStore
from jishi.testing import FakeClock, free_port, wait_for_port


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = await SqliteStore.open(tmp_path / "state.db", clock=FakeClock(), synchronous="NORMAL")
    yield Registry(store)
    await store.close()


@pytest.fixture
async def cp(registry: Registry) -> AsyncIterator[HttpControlPlane]:
    client = HttpControlPlane("http://cp", transport=httpx.ASGITransport(create_app(registry)))  # type: ignore[arg-type]
    yield client
    await client.aclose()


def ev(kind: str, subject: str, level: str = "info") -> EventRecord:
    return EventRecord.model_validate({"time": 1.0, "kind": kind, "subject": subject, "reason": "r", "level": level})


async def test_record_and_list_round_trip(cp: HttpControlPlane) -> None:
    """POST /v1/events assigns an id; GET filters by kind/subject and pages with since and limit."""
    first = await cp.record_event(ev("instance.exited", "web/web-1", "error"))
    second = await cp.record_event(ev("service.scaled", "web"))
    assert first.id and second.id > first.id and first.level == "error"
    assert await cp.events() == [first, second]
    assert await cp.events(kind="instance") == [first]
    assert await cp.events(subject="web/web-1") == [first]
    assert await cp.events(since=first.id) == [second]
    assert await cp.events(limit=1) == [second]


async def test_bad_event_and_bad_limit_are_400_json(registry: Registry) -> None:
    """An event without a kind, or limit=0, is refused with a JSON error body."""
    app = create_app(registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://cp") as http:  # type: ignore[arg-type]
        bad = await http.post("/v1/events", json={"time": 1, "subject": "x", "reason": "y"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        assert "kind" in bad.json()["error"]["message"]
        assert (await http.get("/v1/events", params={"limit": 0})).status_code == 400


async def test_restart_request_is_202_and_unknown_instance_404(cp: HttpControlPlane, registry: Registry) -> None:
    """POST .../restart answers 202 {"restarting": id} for a registered instance and 404 otherwise."""
    lease = await registry.grant_lease(30.0)
    await registry.register_instance(Instance(id="web-1", service="web", port=9001), lease)
    app = create_app(registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://cp") as http:  # type: ignore[arg-type]
        ok = await http.post("/v1/instances/web/web-1/restart")
        assert (ok.status_code, ok.json()["restarting"]) == (202, "web-1") and ok.json()["requested_at"] > 0
        missing = await http.post("/v1/instances/web/nope/restart")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    with pytest.raises(NotFoundError):
        await cp.request_restart("web", "nope")
    await cp.clear_restart("web", "web-1")
    assert (await registry.snapshot("/jishi/restarts/"))[1] == []


async def test_scale_through_the_api_is_an_event(cp: HttpControlPlane) -> None:
    """Scaling over HTTP leaves a service.scaled event that says from and to."""
    await cp.put_service(ServiceSpec(name="web", command=["x"], instances=1))
    await cp.scale("web", 3)
    [event] = await cp.events(kind="service.scaled")
    assert event.reason == "scaled from 1 to 3 instances"


@pytest.fixture
async def server(registry: Registry) -> AsyncIterator[tuple[ControlPlaneServer, str]]:
    port = free_port()
    srv = ControlPlaneServer(registry, port=port, heartbeat=0.2)
    task = asyncio.create_task(srv.run())
    await asyncio.to_thread(wait_for_port, port, timeout=10)
    yield srv, f"http://127.0.0.1:{port}"
    srv.stop()
    await asyncio.wait_for(task, 10)


async def test_follow_stream_sends_backlog_then_live_events_and_heartbeats(
    server: tuple[ControlPlaneServer, str], registry: Registry
) -> None:
    """GET /v1/events?follow=true&since=ID streams the events after ID, then new ones; heartbeats when idle."""
    _, url = server
    first = await registry.record_event(ev("a.one", "s"))
    second = await registry.record_event(ev("a.two", "s"))
    lines: list[dict[str, object]] = []
    params = {"follow": "true", "since": first.id}
    async with (
        httpx.AsyncClient(base_url=url) as http,
        http.stream("GET", "/v1/events", params=params) as response,
    ):
        assert response.headers["content-type"].startswith("application/x-ndjson")

        async def read() -> None:
            async for line in response.aiter_lines():
                lines.append(json.loads(line))
                if sum("id" in x for x in lines) == 2 and sum("heartbeat" in x for x in lines) >= 2:
                    return

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.1)
        third = await registry.record_event(ev("a.three", "s"))
        await asyncio.wait_for(reader, 5)
    assert [x["id"] for x in lines if "id" in x] == [second.id, third.id]
    assert "heartbeat" in lines[0]


async def test_client_follow_resumes_across_a_server_restart(registry: Registry) -> None:
    """HttpControlPlane.follow_events delivers every event once, in order, across a stop and start of the server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seen: list[EventRecord] = []
    two_seen = asyncio.Event()

    async def serve() -> tuple[ControlPlaneServer, asyncio.Task[None]]:
        srv = ControlPlaneServer(registry, port=port, heartbeat=0.2)
        task = asyncio.create_task(srv.run())
        await asyncio.to_thread(wait_for_port, port, timeout=10)
        return srv, task

    srv, task = await serve()
    cp = HttpControlPlane(url, timeout=2.0, watch_idle_timeout=2.0)
    follower = cp.follow_events(None, kind="k")

    async def read() -> None:
        async for event in follower:
            seen.append(event)
            if len(seen) == 2:
                two_seen.set()
            if len(seen) == 4:
                return

    reader = asyncio.create_task(read())
    try:
        await asyncio.sleep(0.3)
        await registry.record_event(ev("k.a", "s"))
        await registry.record_event(ev("other", "s"))
        await registry.record_event(ev("k.b", "s"))
        await asyncio.wait_for(two_seen.wait(), 20)
        srv.stop()
        await asyncio.wait_for(task, 10)
        await registry.record_event(ev("k.c", "s"))  # while no server runs
        srv, task = await serve()
        await registry.record_event(ev("k.d", "s"))
        await asyncio.wait_for(reader, 30)
    finally:
        reader.cancel()
        await follower.aclose()  # type: ignore[attr-defined]
        await cp.aclose()
        srv.stop()
        await asyncio.wait_for(task, 10)
    assert [e.kind for e in seen] == ["k.a", "k.b", "k.c", "k.d"]


async def test_sweeper_applies_retention(registry: Registry) -> None:
    """The server's sweeper keeps at most max_events events."""
    for i in range(7):
        await registry.record_event(ev("x", f"s{i}"))
    srv = ControlPlaneServer(registry, port=free_port(), max_events=3)
    assert await srv.sweeper.sweep_once() == 4
    assert [e.subject for e in await registry.events()] == ["s4", "s5", "s6"]
