"""The agent as a real process against a real control-plane server, over HTTP (`python -m jishi.agent`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_harness import alive, eventually, passing, service_spec

from jishi.api import HttpControlPlane
from jishi.testing import ManagedProcess, ProcessGroup, free_port, wait_for_port

pytestmark = pytest.mark.slow


def _start_server(procs: ProcessGroup, data_dir: Path, port: int) -> ManagedProcess:
    server = procs.python("server", "-m", "jishi.server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir))
    wait_for_port(port, timeout=15)
    return server


@pytest.fixture
async def cluster(procs: ProcessGroup, tmp_path: Path) -> AsyncIterator[tuple[HttpControlPlane, int]]:
    port = free_port()
    _start_server(procs, tmp_path / "server", port)
    cp = HttpControlPlane(f"http://127.0.0.1:{port}", timeout=2.0)
    try:
        yield cp, port
    finally:
        await cp.aclose()


def _start_agent(procs: ProcessGroup, tmp_path: Path, port: int) -> ManagedProcess:
    url = f"http://127.0.0.1:{port}"
    return procs.python("agent", "-m", "jishi.agent", "--control-plane", url, "--data-dir", str(tmp_path / "agent"))


async def test_agent_process_runs_instances_and_takes_a_dead_one_out_fast(
    cluster: tuple[HttpControlPlane, int], procs: ProcessGroup, tmp_path: Path
) -> None:
    """Over HTTP: 3 instances pass; a kill -9 is out of the registry within 1 s; SIGKILL of the agent orphans none."""
    cp, port = cluster
    await cp.put_service(service_spec("web", 3))
    agent = _start_agent(procs, tmp_path, port)
    await eventually(lambda: _n_passing(cp, 3), within=20, what=f"3 passing instances\n{agent.log()}")
    instances = await passing(cp, "web")
    pids = [i.pid for i in instances if i.pid is not None]
    try:
        victim = instances[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        took = await eventually(lambda: _absent(cp, victim.id), within=1.0, what="deregistration over HTTP")
        assert took < 1.0
        await eventually(lambda: _n_passing(cp, 3), within=5, what="restart")
        pids = [i.pid for i in await passing(cp, "web") if i.pid is not None]
        agent.signal(signal.SIGKILL)
        agent.popen.wait(timeout=5)
        await eventually(lambda: _all_dead(pids), within=2.0, what="instances dying with the agent")
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_control_plane_restart_keeps_instances_and_registers_them_again(
    cluster: tuple[HttpControlPlane, int], procs: ProcessGroup, tmp_path: Path
) -> None:
    """The server is down longer than the lease TTL: instances keep running (same pids), and once it is back
    the agent takes a new lease and registers them all again."""
    cp, port = cluster
    await cp.put_service(service_spec("web", 2, lease_ttl=1.0))
    agent = _start_agent(procs, tmp_path, port)
    await eventually(lambda: _n_passing(cp, 2), within=20, what=f"2 passing instances\n{agent.log()}")
    before = {i.id: i.pid for i in await passing(cp, "web")}
    server = procs.processes[0]
    server.stop()
    await asyncio.sleep(2.0)  # longer than the lease TTL
    assert all(pid is not None and alive(pid) for pid in before.values())
    started = time.monotonic()
    _start_server(procs, tmp_path / "server", port)
    await eventually(lambda: _n_passing(cp, 2), within=10, what=f"re-registration\n{agent.log()}")
    after = {i.id: i.pid for i in await passing(cp, "web")}
    assert after == before
    assert time.monotonic() - started < 5.0
    assert agent.alive()
    agent.signal(signal.SIGTERM)
    assert agent.popen.wait(timeout=15) == 0, agent.log()
    assert not any(alive(pid) for pid in before.values() if pid is not None)


async def _n_passing(cp: HttpControlPlane, n: int) -> bool:
    try:
        return len(await passing(cp, "web")) == n
    except Exception:
        return False


async def _absent(cp: HttpControlPlane, instance_id: str) -> bool:
    return all(i.id != instance_id for i in await cp.list_instances("web"))


async def _all_dead(pids: list[int]) -> bool:
    return not any(alive(pid) for pid in pids)
