"""The agent's events and restart requests: real instances on a Registry; the event buffer against failing sinks."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from agent_harness import FakeControlPlane, alive, eventually, passing, running_agent, service_spec

from jishi.registry import Registry
from jishi.registry.events import EventBuffer
from jishi.registry.model import RESTARTS, EventRecord


def ev(n: int) -> EventRecord:
    return EventRecord(time=float(n), kind="k", subject=f"s{n}", reason="r")


class FlakySink:
    """Fails the first `failures` sends, then keeps what it is sent."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.got: list[EventRecord] = []

    async def record_event(self, event: EventRecord) -> EventRecord:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("control plane unreachable (test)")
        self.got.append(event)
        return event


async def test_buffer_retries_in_order_and_never_blocks_emit() -> None:
    """emit returns at once; failed sends are retried; events arrive once, in order."""
    sink = FlakySink(failures=3)
    buffer = EventBuffer(sink, retry=(0.01, 0.02))
    task = asyncio.create_task(buffer.run())
    for n in range(5):
        buffer.emit(ev(n))

    async def delivered() -> bool:
        return len(sink.got) == 5

    await eventually(delivered, 5.0, "5 events delivered")
    task.cancel()
    assert [e.subject for e in sink.got] == ["s0", "s1", "s2", "s3", "s4"]
    assert len(buffer) == 0 and buffer.sent == 5


async def test_buffer_drops_the_oldest_when_full_and_flush_is_bounded() -> None:
    """A full buffer drops its oldest events (counted); flush against a dead sink gives up at once."""
    sink = FlakySink(failures=10**6)
    buffer = EventBuffer(sink, maxlen=3)
    for n in range(5):
        buffer.emit(ev(n))
    assert buffer.dropped == 2 and len(buffer) == 3
    assert await buffer.flush(0.5) is False
    sink.failures = 0
    assert await buffer.flush(0.5) is True
    assert [e.subject for e in sink.got] == ["s2", "s3", "s4"]


async def _kinds(cp: Registry, subject: str) -> list[str]:
    return [e.kind for e in await cp.events(subject=subject, limit=1000)]


async def test_crash_and_restart_are_events(cp: Registry, tmp_path: Path) -> None:
    """started → health passing → exited (SIGKILL) → restarted with a new pid, each an event about the instance."""
    await cp.put_service(service_spec("web", 1))
    async with running_agent(cp, tmp_path):

        async def one_passing() -> bool:
            return len(await passing(cp, "web")) == 1

        await eventually(one_passing, what="1 passing instance")
        [inst] = await passing(cp, "web")
        assert inst.pid is not None
        subject = f"web/{inst.id}"
        os.kill(inst.pid, signal.SIGKILL)

        async def restarted() -> bool:
            return "instance.restarted" in await _kinds(cp, subject)

        await eventually(restarted, 15.0, "an instance.restarted event")
    events = await cp.events(subject=subject, limit=1000)
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["instance.started", "instance.health", "instance.exited"]
    started, health, exited = events[:3]
    assert started.labels["pid"] == str(inst.pid) and started.labels["port"] == str(inst.port)
    assert health.reason.startswith("critical → passing: GET http://127.0.0.1:") and health.level == "info"
    assert exited.level == "error" and "signal SIGKILL" in exited.reason and exited.labels["exit"] == "signal SIGKILL"
    again = next(e for e in events if e.kind == "instance.restarted")
    assert again.labels["pid"] != str(inst.pid) and again.labels["restarts"] == "1"
    assert "after a crash" in again.reason and "backoff 0.10 s" in again.reason
    assert kinds[-1] == "instance.stopped"  # the agent's own stop at the end


async def test_restart_request_restarts_the_instance_gracefully(cp: Registry, tmp_path: Path) -> None:
    """A restart request: the old process stops (SIGTERM), a new one runs in the same slot, the request is cleared."""
    await cp.put_service(service_spec("web", 2))
    async with running_agent(cp, tmp_path) as agent:

        async def two_passing() -> bool:
            return len(await passing(cp, "web")) == 2

        await eventually(two_passing, what="2 passing instances")
        target, other = sorted(await passing(cp, "web"), key=lambda i: i.id)
        assert target.pid is not None
        await cp.request_restart("web", target.id, "testing")

        async def replaced() -> bool:
            now = {i.id: i for i in await passing(cp, "web")}
            return target.id in now and now[target.id].pid != target.pid

        await eventually(replaced, 15.0, "the instance running with a new pid")
        assert not alive(target.pid)
        now = {i.id: i for i in await passing(cp, "web")}
        assert now[other.id].pid == other.pid  # the other instance was left alone
        assert now[target.id].restarts == 0  # an operator's restart is not a crash

        async def cleared() -> bool:
            return (await cp.snapshot(RESTARTS))[1] == []

        await eventually(cleared, 5.0, "the request cleared")
        assert agent.restarts.restarted == 1
        kinds = await _kinds(cp, f"web/{target.id}")
    assert kinds[kinds.index("instance.restart_requested") :][:3] == [
        "instance.restart_requested",
        "instance.stopped",
        "instance.restarted",
    ]
    [restarted] = await cp.events(kind="instance.restarted")
    assert "on request: testing" in restarted.reason


async def test_agent_runs_on_a_control_plane_without_events(fake_cp: FakeControlPlane, tmp_path: Path) -> None:
    """A control plane that cannot take events (or restarts) does not hold up the agent: instances still run."""
    fake_cp.services["web"] = service_spec("web", 1)
    async with running_agent(fake_cp, tmp_path) as agent:

        async def one_passing() -> bool:
            return len(await passing(fake_cp, "web")) == 1

        await eventually(one_passing, what="1 passing instance")
        assert len(agent.events) >= 1  # buffered, not lost, not blocking


async def test_health_transitions_are_events_with_the_check_output(cp: Registry, tmp_path: Path) -> None:
    """A check that starts failing: instance.health passing → critical (error, with the check's output); back to
    passing when it recovers (info)."""
    flag = tmp_path / "unhealthy"
    await cp.put_service(service_spec("web", 1, env={"HEALTH_FAIL_FILE": str(flag)}))
    async with running_agent(cp, tmp_path / "agent"):

        async def one_passing() -> bool:
            return len(await passing(cp, "web")) == 1

        await eventually(one_passing, what="1 passing instance")
        flag.touch()

        async def health_events(n: int) -> bool:
            return len(await cp.events(kind="instance.health")) >= n

        await eventually(lambda: health_events(2), 10.0, "a passing → critical event")
        flag.unlink()
        await eventually(lambda: health_events(3), 10.0, "a critical → passing event")
    events = await cp.events(kind="instance.health")
    assert [(e.labels["old"], e.labels["new"], e.level) for e in events] == [
        ("critical", "passing", "info"),
        ("passing", "critical", "error"),
        ("critical", "passing", "info"),
    ]
    assert events[1].reason.endswith("HTTP 500, expected 200–399")
