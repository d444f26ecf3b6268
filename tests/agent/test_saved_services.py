"""An agent started while the control plane is down runs what it ran before, from data_dir/services.json."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from agent_harness import FakeControlPlane, alive, eventually, passing, running_agent, service_spec

from jishi.agent import Agent


async def test_restart_while_the_control_plane_is_down_runs_the_saved_services(
    fake_cp: FakeControlPlane, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Synced, stopped, control plane down, restarted: the instances run again; they register once it is back."""
    saved = tmp_path / "services.json"
    await fake_cp.put_service(service_spec("web", 2))
    async with running_agent(fake_cp, tmp_path):
        await eventually(lambda: _passing(fake_cp, 2), what="2 passing instances")
        await eventually(lambda: _saved_names(saved, ["web"]), within=2.0, what="services.json written")
    assert await fake_cp.list_instances() == []
    fake_cp.down = True
    caplog.set_level(logging.WARNING, "jishi.agent.follower")
    async with running_agent(fake_cp, tmp_path) as agent:
        await eventually(lambda: _serving(agent, 2), within=10.0, what="2 instances running from the saved copy")
        assert all(sup.pid is not None and alive(sup.pid) for sup in agent.slots.values())
        assert "running the 1 services saved in" in caplog.text
        assert await fake_cp.list_instances() == []
        fake_cp.down = False
        await eventually(lambda: _passing(fake_cp, 2), within=5.0, what="registration once the control plane is back")
        await fake_cp.scale("web", 1)  # and the control plane is followed again
        await eventually(lambda: _serving(agent, 1), within=5.0, what="scale-down from the control plane")
        await eventually(lambda: _saved_instances(saved, 1), within=2.0, what="services.json updated")


async def test_without_a_saved_copy_nothing_runs_until_the_control_plane_answers(
    fake_cp: FakeControlPlane, tmp_path: Path
) -> None:
    """No services.json and no control plane: the agent starts nothing, then follows the control plane."""
    await fake_cp.put_service(service_spec("web", 1))
    fake_cp.down = True
    async with running_agent(fake_cp, tmp_path) as agent:
        await asyncio.sleep(1.0)  # several snapshot attempts fail meanwhile
        assert agent.slots == {}
        fake_cp.down = False
        await eventually(lambda: _passing(fake_cp, 1), within=10.0)


async def test_a_change_is_saved_while_running(fake_cp: FakeControlPlane, tmp_path: Path) -> None:
    """A service added through the watch reaches services.json within the save delay (no shutdown needed)."""
    await fake_cp.put_service(service_spec("web", 1))
    async with running_agent(fake_cp, tmp_path):
        await eventually(lambda: _saved_names(tmp_path / "services.json", ["web"]), within=2.0)
        await fake_cp.put_service(service_spec("api", 1))
        await eventually(lambda: _saved_names(tmp_path / "services.json", ["api", "web"]), within=2.0)


async def _passing(cp: FakeControlPlane, n: int) -> bool:
    return len(await passing(cp, "web")) == n


async def _serving(agent: Agent, n: int) -> bool:
    return len(agent.slots) == n and all(sup.lifecycle.serving for sup in agent.slots.values())


def _read(path: Path) -> list[dict[str, object]]:
    try:
        return json.loads(path.read_text())["services"]  # type: ignore[no-any-return]
    except FileNotFoundError:
        return []


async def _saved_names(path: Path, names: list[str]) -> bool:
    return sorted(str(s["name"]) for s in _read(path)) == names


async def _saved_instances(path: Path, n: int) -> bool:
    return [s["instances"] for s in _read(path)] == [n]
