"""No remnant of an instance survives: its process group dies with it, and a restarted agent ends the groups a
SIGKILLed run left behind (PR_SET_PDEATHSIG reaches only the instance's own process, not its children)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from agent_harness import alive, eventually, running_agent, service_spec

from jishi.agent.groups import end_leftovers, start_time
from jishi.registry import Registry
from jishi.registry.model import ServiceSpec
from jishi.testing import ProcessGroup
from jishi.testing.processes import wait_until

AGENT_PROCESS = str(Path(__file__).with_name("agent_process.py"))
FORKING = 'sleep 300 & echo $! > "$PID_DIR/$JISHI_INSTANCE"; wait'  # a shell whose child outlives it


def _forking_spec(pid_dir: Path) -> ServiceSpec:
    return service_spec("sh", 1, command=["sh", "-c", FORKING], env={"PID_DIR": str(pid_dir)})


def _child_pid(pid_dir: Path) -> int | None:
    """The pid the shell wrote: its `sleep` child (None until written)."""
    for path in pid_dir.iterdir():
        text = path.read_text().strip()
        if text:
            return int(text)
    return None


async def test_crash_of_the_leader_kills_the_whole_group(cp: Registry, tmp_path: Path) -> None:
    """SIGKILL of an instance's own process: the child it left in its group is killed with it."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    await cp.put_service(_forking_spec(pid_dir))
    async with running_agent(cp, tmp_path / "agent") as agent:
        await eventually(lambda: _written(pid_dir), within=10.0, what="the shell's child started")
        child = _child_pid(pid_dir)
        assert child is not None
        try:
            leader = agent.slots[("sh", 0)].pid
            assert leader is not None and alive(child)
            for path in pid_dir.iterdir():
                path.unlink()
            os.kill(leader, signal.SIGKILL)

            async def child_dead() -> bool:
                return not alive(child)

            await eventually(child_dead, within=2.0, what="the shell's child killed with its group")
        finally:
            _kill([child])


def test_restarted_agent_kills_what_a_sigkilled_run_left(procs: ProcessGroup, tmp_path: Path) -> None:
    """kill -9 of the agent leaves the shell's child re-parented to init; the next agent start kills it."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    argv = [
        sys.executable,
        AGENT_PROCESS,
        str(tmp_path / "s.db"),
        str(tmp_path / "agent"),
        _forking_spec(pid_dir).model_dump_json(),
    ]
    first = procs.start("agent-1", argv)
    wait_until(lambda: _child_pid(pid_dir) is not None, timeout=20)
    child = _child_pid(pid_dir)
    assert child is not None
    try:
        wait_until(lambda: _recorded(tmp_path / "agent") == [os.getpgid(child)], timeout=5)
        for path in pid_dir.iterdir():
            path.unlink()
        first.signal(signal.SIGKILL)
        first.popen.wait(timeout=5)
        assert alive(child)  # the parent-death signal did not reach it
        second = procs.start("agent-2", argv)
        wait_until(lambda: not alive(child), timeout=10)
        assert "left processes behind" in second.log()
        wait_until(lambda: _child_pid(pid_dir) is not None, timeout=20)  # and the instance runs again
    finally:
        _kill([child, *[int(p.read_text()) for p in pid_dir.iterdir() if p.read_text().strip()]])


def test_a_reused_pid_is_left_alone(tmp_path: Path) -> None:
    """A recorded group whose leader pid now belongs to a process with another start time is not killed;
    with the recorded start time it is."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = start_time(proc.pid)
        assert started is not None
        path = tmp_path / "instances.json"
        path.write_text(json.dumps({"instances": {"x": {"pgid": proc.pid, "start": started + 1}}}))
        assert end_leftovers(path) == 0
        assert proc.poll() is None
        assert json.loads(path.read_text()) == {"instances": {}}
        path.write_text(json.dumps({"instances": {"x": {"pgid": proc.pid, "start": started}}}))
        assert end_leftovers(path) == 1
        assert proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


def test_unreadable_record_file_is_ignored(tmp_path: Path) -> None:
    """A corrupt instances.json is logged and skipped; the agent starts anyway."""
    path = tmp_path / "instances.json"
    path.write_text("{not json")
    assert end_leftovers(path) == 0


def _recorded(data_dir: Path) -> list[int]:
    """The process groups the agent has recorded in instances.json."""
    try:
        return [r["pgid"] for r in json.loads((data_dir / "instances.json").read_text())["instances"].values()]
    except (FileNotFoundError, ValueError):
        return []


async def _written(pid_dir: Path) -> bool:
    return _child_pid(pid_dir) is not None


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
