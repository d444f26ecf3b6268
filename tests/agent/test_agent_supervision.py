"""The agent end to end in-process: start, health, crash → deregister → restart, scale, stop, spec changes."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

from agent_harness import alive, eventually, passing, running_agent, service_spec

from jishi.registry import Registry
from jishi.registry.model import AGENTS, INSTANCES, Health


def _whoami(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/whoami", timeout=2) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def test_instances_start_register_and_become_passing(cp: Registry, tmp_path: Path) -> None:
    """3 desired instances: 3 processes on distinct ports, registered with pid/agent/weight, then passing."""
    await cp.put_service(service_spec("web", 3, weight=5))
    async with running_agent(cp, tmp_path):
        await eventually(lambda: _count(cp, "web", 3), what="3 passing instances")
        instances = await passing(cp, "web")
        assert len({i.port for i in instances}) == 3
        assert {i.id for i in instances} == {f"web-{_hash6('test-agent')}-{k}" for k in range(3)}
        for inst in instances:
            assert inst.agent == "test-agent" and inst.weight == 5 and inst.restarts == 0
            who = await asyncio.to_thread(_whoami, inst.port)
            assert who == {"service": "web", "instance": inst.id, "pid": inst.pid}
        _, kvs = await cp.snapshot(INSTANCES)
        _, agents = await cp.snapshot(AGENTS)
        assert [kv.key.decode() for kv in agents] == [AGENTS + "test-agent"]
        assert {kv.lease for kv in kvs} == {agents[0].lease} != {0}  # one lease carries everything


async def test_killed_instance_leaves_at_once_and_comes_back(cp: Registry, tmp_path: Path) -> None:
    """kill -9 of an instance: deregistered well within 1 s, restarted with a new pid, passing again."""
    await cp.put_service(service_spec("web", 2))
    async with running_agent(cp, tmp_path):
        await eventually(lambda: _count(cp, "web", 2))
        victim = (await passing(cp, "web"))[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        gone = await eventually(lambda: _absent(cp, victim.id), within=1.0, what="deregistration")
        assert gone < 0.5

        async def back() -> bool:
            again = [i for i in await passing(cp, "web") if i.id == victim.id]
            return bool(again) and again[0].pid != victim.pid

        await eventually(back, within=5.0, what="restart")
        restarted = next(i for i in await passing(cp, "web") if i.id == victim.id)
        assert restarted.restarts == 1
        assert restarted.port == victim.port  # the slot keeps its port


async def test_scale_up_and_down(cp: Registry, tmp_path: Path) -> None:
    """scale 1 → 4 starts 3 more; 4 → 2 drains and stops the two highest slots and their processes."""
    await cp.put_service(service_spec("web", 1))
    async with running_agent(cp, tmp_path) as agent:
        await eventually(lambda: _count(cp, "web", 1))
        await cp.scale("web", 4)
        await eventually(lambda: _count(cp, "web", 4), within=5.0)
        by_slot = {i.id.rsplit("-", 1)[1]: i for i in await passing(cp, "web")}
        await cp.scale("web", 2)
        await eventually(lambda: _total(cp, "web", 2), within=5.0)
        assert sorted(i.id.rsplit("-", 1)[1] for i in await cp.list_instances("web")) == ["0", "1"]
        for slot in ("2", "3"):
            pid = by_slot[slot].pid
            assert pid is not None
            await eventually(lambda p=pid: _dead(p), within=2.0)  # type: ignore[misc]
        assert set(agent.slots) == {("web", 0), ("web", 1)}


async def test_scale_down_drains_before_terminating(cp: Registry, tmp_path: Path) -> None:
    """The stopped instance is marked draining (still alive) for drain_seconds before it gets SIGTERM."""
    await cp.put_service(service_spec("web", 1, drain_seconds=0.5))
    async with running_agent(cp, tmp_path):
        await eventually(lambda: _count(cp, "web", 1))
        (inst,) = await passing(cp, "web")
        assert inst.pid is not None
        await cp.scale("web", 0)

        async def draining() -> bool:
            return any(i.draining for i in await cp.list_instances("web"))

        await eventually(draining, within=1.0, what="draining")
        assert alive(inst.pid)
        await eventually(lambda: _total(cp, "web", 0), within=3.0)
        assert not alive(inst.pid)


async def test_stop_kills_an_instance_that_ignores_sigterm(cp: Registry, tmp_path: Path) -> None:
    """An instance ignoring SIGTERM is SIGKILLed after stop_timeout; the stop takes about that long."""
    await cp.put_service(service_spec("web", 1, env={"IGNORE_TERM": "1"}, stop_timeout=1.0, drain_seconds=0.0))
    async with running_agent(cp, tmp_path):
        await eventually(lambda: _count(cp, "web", 1))
        (inst,) = await passing(cp, "web")
        assert inst.pid is not None
        started = time.monotonic()
        await cp.scale("web", 0)
        await eventually(lambda: _dead(inst.pid), within=4.0)  # type: ignore[arg-type]
        assert 0.9 <= time.monotonic() - started < 3.0
    log = (tmp_path / "logs" / f"{inst.id}.log").read_text()
    assert "listening on" in log


async def test_agent_shutdown_stops_every_instance_and_revokes_the_lease(cp: Registry, tmp_path: Path) -> None:
    """stop(): all instances are stopped (SIGTERM), deregistered, and the lease revoked."""
    await cp.put_service(service_spec("web", 2))
    await cp.put_service(service_spec("api", 1))
    async with running_agent(cp, tmp_path):
        await eventually(lambda: _count(cp, "web", 2))
        await eventually(lambda: _count(cp, "api", 1))
        pids = [i.pid for i in await cp.list_instances()]
    assert all(pid is not None and not alive(pid) for pid in pids)
    assert await cp.list_instances() == []
    assert await cp.list_agents() == []  # the lease was revoked


async def test_crash_at_start_is_retried_with_growing_delays(cp: Registry, tmp_path: Path) -> None:
    """A process that exits at once is restarted again and again with growing gaps, and never passes."""
    await cp.put_service(service_spec("bad", 1, command=["sh", "-c", "date +%s.%N; exit 3"]))
    async with running_agent(cp, tmp_path) as agent:
        await eventually(lambda: _restarts(agent, 5), within=15.0, what="5 restarts")
        sup = agent.slots[("bad", 0)]
        before = sup.restarts
        await eventually(lambda: _restarts(agent, before + 1), within=6.0, what="another restart at the 2 s cap")
        assert await passing(cp, "bad") == []
    log = (tmp_path / "logs" / f"bad-{_hash6('test-agent')}-0.log").read_text()
    starts = [float(line) for line in log.split()]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # delays 0.1, 0.2, 0.4, 0.8, 1.6, each gap that delay plus the time a start takes (tens of ms on a busy
    # machine): every gap at least its delay, and each longer than the one before
    delays = [0.1, 0.2, 0.4, 0.8, 1.6]
    assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=False)), gaps
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps[:5])), gaps
    assert gaps[3] > 4 * gaps[0], gaps  # it grows: 0.8 s against 0.1 s


async def test_spec_change_replaces_instances_one_at_a_time(cp: Registry, tmp_path: Path) -> None:
    """A changed command/env rolls through the slots: new pids everywhere, never fewer than 2 of 3 passing."""
    await cp.put_service(service_spec("web", 3))
    async with running_agent(cp, tmp_path):
        await eventually(lambda: _count(cp, "web", 3))
        old = {i.pid for i in await passing(cp, "web")}
        await cp.put_service(service_spec("web", 3, env={"VERSION": "2"}))
        lowest = 3
        started = time.monotonic()
        while time.monotonic() - started < 15:
            now = await passing(cp, "web")
            lowest = min(lowest, len(now))
            if len(now) == 3 and not {i.pid for i in now} & old:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the roll-out did not finish")
        assert lowest >= 2


async def test_deleted_service_is_stopped(cp: Registry, tmp_path: Path) -> None:
    """Deleting a service stops and deregisters all its instances; other services keep running."""
    await cp.put_service(service_spec("web", 2))
    await cp.put_service(service_spec("api", 1))
    async with running_agent(cp, tmp_path):
        await eventually(lambda: _count(cp, "web", 2))
        await eventually(lambda: _count(cp, "api", 1))
        await cp.delete_service("web")
        await eventually(lambda: _total(cp, "web", 0), within=5.0)
        assert len(await passing(cp, "api")) == 1


async def test_health_failure_and_warning_are_written_on_transitions(cp: Registry, tmp_path: Path) -> None:
    """An instance answering /healthz with 429 is registered as WARNING (still in rotation)."""
    await cp.put_service(service_spec("web", 1, env={"HEALTH_STATUS": "429"}))
    async with running_agent(cp, tmp_path):

        async def warning() -> bool:
            return [i.health for i in await cp.list_instances("web")] == [Health.WARNING]

        await eventually(warning, within=5.0)


async def _count(cp: Registry, service: str, n: int) -> bool:
    return len(await passing(cp, service)) == n


async def _total(cp: Registry, service: str, n: int) -> bool:
    return len(await cp.list_instances(service)) == n


async def _absent(cp: Registry, instance_id: str) -> bool:
    return all(i.id != instance_id for i in await cp.list_instances())


async def _dead(pid: int) -> bool:
    return not alive(pid)


async def _restarts(agent: object, n: int) -> bool:
    slots = getattr(agent, "slots", {})
    return bool(slots) and next(iter(slots.values())).restarts >= n


def _hash6(agent_id: str) -> str:
    import hashlib

    return hashlib.sha1(agent_id.encode()).hexdigest()[:6]


async def test_weight_change_applies_in_place(cp: Registry, tmp_path: Path) -> None:
    """A new weight reaches the registry without restarting the process (same pid, still passing)."""
    await cp.put_service(service_spec("web", 1, weight=1))
    async with running_agent(cp, tmp_path):
        await eventually(lambda: _count(cp, "web", 1))
        (before,) = await passing(cp, "web")
        await cp.put_service(service_spec("web", 1, weight=7))

        async def reweighted() -> bool:
            now = await passing(cp, "web")
            return len(now) == 1 and now[0].weight == 7

        await eventually(reweighted, within=3.0)
        (after,) = await passing(cp, "web")
        assert after.pid == before.pid and after.restarts == 0
