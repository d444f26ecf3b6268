"""The agent under faults: its own SIGKILL (no orphans), a lost lease, an unreachable control plane."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from agent_harness import FakeControlPlane, alive, eventually, passing, running_agent, service_spec

from jishi.registry import Registry
from jishi.registry.model import INSTANCES
from jishi.testing import ProcessGroup
from jishi.testing.processes import wait_until

AGENT_PROCESS = str(Path(__file__).with_name("agent_process.py"))


def test_sigkill_of_the_agent_leaves_no_instance_alive(procs: ProcessGroup, tmp_path: Path) -> None:
    """kill -9 of a real agent process: every instance it started dies too (PR_SET_PDEATHSIG)."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    spec = service_spec("web", 3, env={"PID_DIR": str(pid_dir)})
    agent = procs.start(
        "agent",
        [sys.executable, AGENT_PROCESS, str(tmp_path / "s.db"), str(tmp_path / "agent"), spec.model_dump_json()],
    )
    wait_until(lambda: len(list(pid_dir.iterdir())) == 3, timeout=20)
    pids = [int(p.name) for p in pid_dir.iterdir()]
    try:
        assert all(alive(pid) for pid in pids), agent.log()
        agent.signal(signal.SIGKILL)
        agent.popen.wait(timeout=5)
        wait_until(lambda: not any(alive(pid) for pid in pids), timeout=2)
    finally:  # if the behaviour is broken, do not leave the orphans behind
        _kill(pids)


def test_sigterm_of_the_agent_stops_instances_and_exits_cleanly(procs: ProcessGroup, tmp_path: Path) -> None:
    """SIGTERM to a real agent process: instances get SIGTERM, the agent exits with status 0."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    spec = service_spec("web", 2, env={"PID_DIR": str(pid_dir)})
    agent = procs.start(
        "agent",
        [sys.executable, AGENT_PROCESS, str(tmp_path / "s.db"), str(tmp_path / "agent"), spec.model_dump_json()],
    )
    wait_until(lambda: len(list(pid_dir.iterdir())) == 2, timeout=20)
    pids = [int(p.name) for p in pid_dir.iterdir()]
    wait_until(lambda: agent.log().count("is passing") == 2, timeout=10)
    agent.signal(signal.SIGTERM)
    try:
        assert agent.popen.wait(timeout=10) == 0, agent.log()
        assert not any(alive(pid) for pid in pids)
    finally:
        _kill(pids)
    assert agent.log().count("stopped (signal SIGTERM)") == 2


async def test_lost_lease_is_replaced_and_instances_register_again(cp: Registry, tmp_path: Path) -> None:
    """The agent's lease is revoked behind its back: a new lease is granted and every instance re-registered."""
    await cp.put_service(service_spec("web", 2, lease_ttl=1.5))
    async with running_agent(cp, tmp_path):
        await eventually(lambda: _passing(cp, 2))
        _, kvs = await cp.snapshot(INSTANCES)
        (old_lease,) = {kv.lease for kv in kvs}
        pids = {i.pid for i in await cp.list_instances()}
        await cp.revoke_lease(old_lease)
        assert await cp.list_instances() == []
        took = await eventually(lambda: _passing(cp, 2), within=3.0, what="re-registration")
        assert took < 1.5  # keep-alive every ttl/3 notices the loss
        _, kvs = await cp.snapshot(INSTANCES)
        assert {kv.lease for kv in kvs} != {old_lease}
        assert {i.pid for i in await cp.list_instances()} == pids  # the processes were never restarted
        assert [a.id for a in await cp.list_agents()] == ["test-agent"]


async def test_unreachable_control_plane_does_not_stop_supervision(fake_cp: FakeControlPlane, tmp_path: Path) -> None:
    """While the control plane is down, instances keep running and crashed ones are restarted; afterwards the
    control plane is brought up to date."""
    await fake_cp.put_service(service_spec("web", 2))
    async with running_agent(fake_cp, tmp_path) as agent:
        await eventually(lambda: _passing(fake_cp, 2))
        victim = (await passing(fake_cp, "web"))[0]
        assert victim.pid is not None
        fake_cp.down = True
        os.kill(victim.pid, signal.SIGKILL)

        async def restarted_locally() -> bool:
            sup = next(s for s in agent.slots.values() if s.instance_id == victim.id)
            return sup.pid not in (None, victim.pid) and sup.lifecycle.serving

        await eventually(restarted_locally, within=5.0, what="local restart while the control plane is down")
        await asyncio.sleep(0.5)
        fake_cp.down = False

        async def caught_up() -> bool:
            now = {i.id: i for i in await passing(fake_cp, "web")}
            return len(now) == 2 and now[victim.id].pid != victim.pid

        await eventually(caught_up, within=3.0, what="the control plane catching up")


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def _passing(cp: object, n: int) -> bool:
    return len(await passing(cp, "web")) == n  # type: ignore[arg-type]
