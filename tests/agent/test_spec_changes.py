"""Spec changes that need no new process reach a running slot in full: rise/fall, restart policy, lease TTL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent_harness import eventually, passing, running_agent, service_spec

from jishi.errors import LeaseNotFoundError
from jishi.registry import Registry
from jishi.registry.model import AGENTS, INSTANCES, Health


async def test_new_fall_threshold_applies_to_the_running_instance(cp: Registry, tmp_path: Path) -> None:
    """fall 1000 → 1 on a passing instance: it stays passing (state kept), then one failure makes it critical."""
    fail = tmp_path / "fail"
    check = {"type": "http", "path": "/healthz", "interval": 0.05, "timeout": 0.5, "rise": 1, "fall": 1000}
    spec = service_spec("web", 1, env={"HEALTH_FAIL_FILE": str(fail)}, health_check=check)
    await cp.put_service(spec)
    async with running_agent(cp, tmp_path / "agent") as agent:
        await eventually(lambda: _passing(cp, 1))
        (before,) = await passing(cp, "web")
        await cp.put_service(spec.model_copy(update={"health_check": spec.health_check.model_copy(update={"fall": 1})}))
        await eventually(lambda: _applied(agent, lambda s: s.health_check.fall == 1), within=3.0)
        await asyncio.sleep(0.2)
        assert await _passing(cp, 1)
        fail.touch()

        async def critical() -> bool:
            return [i.health for i in await cp.list_instances("web")] == [Health.CRITICAL]

        await eventually(critical, within=2.0, what="critical after one failure")
        (after,) = await cp.list_instances("web")
        assert after.pid == before.pid


async def test_new_restart_policy_cuts_a_long_backoff_short(cp: Registry, tmp_path: Path) -> None:
    """A crash loop waiting 30 s between restarts: a new policy (≤ 0.1 s) applies to the pause under way."""
    slow = {"initial_delay": 30.0, "max_delay": 30.0, "multiplier": 1.0, "reset_after": 5.0, "jitter": 0.0}
    spec = service_spec("bad", 1, command=["sh", "-c", "exit 3"], restart=slow)
    await cp.put_service(spec)
    async with running_agent(cp, tmp_path / "agent") as agent:
        await eventually(lambda: _restarts(agent, 1), within=5.0)
        fast = {**slow, "initial_delay": 0.05, "max_delay": 0.1}
        await cp.put_service(service_spec("bad", 1, command=["sh", "-c", "exit 3"], restart=fast))
        await eventually(lambda: _restarts(agent, 4), within=3.0, what="fast restarts under the new policy")


async def test_new_lease_ttl_moves_everything_to_a_new_lease(cp: Registry, tmp_path: Path) -> None:
    """lease_ttl 3 → 1.5: instances and agent move to a lease of 1.5 s, the old lease is revoked, and the
    instance never leaves the registry meanwhile."""
    spec = service_spec("web", 1, lease_ttl=3.0)
    await cp.put_service(spec)
    async with running_agent(cp, tmp_path / "agent"):
        await eventually(lambda: _passing(cp, 1))
        (old,) = await _leases(cp)
        assert (await cp.store.lease_info(old)).ttl == 3.0
        await cp.put_service(spec.model_copy(update={"lease_ttl": 1.5}))
        fewest = 1
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            fewest = min(fewest, len(await passing(cp, "web")))
            leases = await _leases(cp)
            if len(leases) == 1 and leases != [old]:
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError(f"still on lease {old:x}")
        assert fewest == 1
        assert (await cp.store.lease_info(leases[0])).ttl == 1.5

        async def revoked() -> bool:
            try:
                await cp.store.lease_info(old)
            except LeaseNotFoundError:
                return True
            return False

        took = await eventually(revoked, within=2.0, what="the old lease revoked")
        assert took < 1.0  # revoked, not expired after its 3 s
        assert [a.id for a in await cp.list_agents()] == ["test-agent"]


async def _leases(cp: Registry) -> list[int]:
    """The distinct leases the agent's records hang on (instances and agent record)."""
    _, instances = await cp.snapshot(INSTANCES)
    _, agents = await cp.snapshot(AGENTS)
    return sorted({kv.lease for kv in [*instances, *agents]})


async def _passing(cp: Registry, n: int) -> bool:
    return len(await passing(cp, "web")) == n


async def _applied(agent: object, test: object) -> bool:
    sups = list(getattr(agent, "slots", {}).values())
    return bool(sups) and all(test(s.spec) for s in sups)  # type: ignore[operator]


async def _restarts(agent: object, n: int) -> bool:
    sups = list(getattr(agent, "slots", {}).values())
    return bool(sups) and sups[0].restarts >= n
