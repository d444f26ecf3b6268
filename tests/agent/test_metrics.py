"""The agent's /metrics: slots, running instances, restarts, health and the health probes it made."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
from agent_harness import eventually, passing, running_agent, service_spec

from jishi.agent import supervisor
from jishi.agent.metrics import AgentMetrics
from jishi.registry import Registry
from jishi.testing import metric_samples


async def test_metrics_count_slots_restarts_health_and_probes(cp: Registry, tmp_path: Path) -> None:
    """Two instances, one killed and restarted: /metrics shows 2 slots running, 1 restart, both passing,
    and passing probes counted and timed; stopping puts the original probe back."""
    original = supervisor.probe
    await cp.put_service(service_spec("web", 2))
    async with running_agent(cp, tmp_path) as agent:
        metrics = AgentMetrics(agent)
        metrics.observe_probes()
        port = await metrics.start("127.0.0.1", 0)
        try:

            async def two_passing() -> bool:
                return len(await passing(cp, "web")) == 2

            await eventually(two_passing)
            victim = (await passing(cp, "web"))[0]
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)

            async def restarted() -> bool:
                again = [i for i in await passing(cp, "web") if i.id == victim.id]
                return bool(again) and again[0].pid != victim.pid and len(await passing(cp, "web")) == 2

            await eventually(restarted, within=10.0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                found = metric_samples((await client.get("/metrics")).text)
                missing = await client.get("/other")
        finally:
            await metrics.stop()
    assert supervisor.probe is original
    assert found[("jishi_agent_slots", (("service", "web"),))] == 2
    assert found[("jishi_agent_instances", (("service", "web"),))] == 2
    assert found[("jishi_agent_instance_restarts_total", (("instance", victim.id), ("service", "web")))] == 1
    health = (("instance", victim.id), ("service", "web"), ("state", "passing"))
    assert found[("jishi_agent_instance_health", health)] == 1
    passes = (("instance", victim.id), ("outcome", "pass"), ("service", "web"))
    assert found[("jishi_agent_health_checks_total", passes)] >= 1
    assert found[("jishi_agent_health_check_duration_seconds_count", (("service", "web"),))] >= 2
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
