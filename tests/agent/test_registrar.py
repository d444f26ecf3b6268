"""The registrar under a slow or failing control plane: a withdrawal never waits behind other updates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from agent_harness import FakeControlPlane, eventually

from jishi.agent.lease import LeaseKeeper
from jishi.agent.registrar import Registrar
from jishi.registry.model import Health, Instance


class SlowControlPlane(FakeControlPlane):
    """Registrations of the instance ids in `slow` take `delay` seconds; counts failed calls."""

    def __init__(self) -> None:
        super().__init__()
        self.slow: set[str] = set()
        self.delay = 10.0

    async def register_instance(self, instance: Instance, lease_id: int) -> None:
        if instance.id in self.slow:
            await asyncio.sleep(self.delay)
        await super().register_instance(instance, lease_id)


class FixedLease:
    """Stands in for the LeaseKeeper: one lease that is always there."""

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id

    async def current(self) -> int:
        return self.lease_id

    def invalidate(self, lease_id: int) -> None:
        raise AssertionError("the lease was not expected to be lost")


def _instance(instance_id: str) -> Instance:
    return Instance(id=instance_id, service="web", address="127.0.0.1", port=1, agent="a", health=Health.PASSING)


@asynccontextmanager
async def _registrar(cp: FakeControlPlane, **options: float) -> AsyncIterator[Registrar]:
    lease = await cp.grant_lease(3.0)
    registrar = Registrar(cp, cast(LeaseKeeper, FixedLease(lease)), **options)
    task = asyncio.create_task(registrar.run())
    try:
        yield registrar
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _registered(cp: FakeControlPlane, instance_id: str) -> bool:
    return ("web", instance_id) in cp.instances


async def test_withdrawal_preempts_a_slow_registration() -> None:
    """A registration hanging on the control plane does not delay a withdrawal published after it."""
    cp = SlowControlPlane()
    async with _registrar(cp, timeout=5.0) as registrar:
        registrar.publish(_instance("a"))
        await eventually(lambda: _registered(cp, "a"), within=2.0)
        cp.slow.add("b")
        registrar.publish(_instance("b"))
        await asyncio.sleep(0.1)  # b's registration is under way (and hangs)
        cp.slow.clear()  # only the call already under way is slow
        registrar.withdraw("web", "a")
        took = await eventually(lambda: _absent(cp, "a"), within=3.0, what="the withdrawal")
        assert took < 0.3
        await eventually(lambda: _registered(cp, "b"), within=3.0, what="b registered after the withdrawal")


async def test_slow_call_is_abandoned_after_the_timeout_and_retried() -> None:
    """A call taking longer than the registrar's timeout is given up and tried again."""
    cp = SlowControlPlane()
    cp.slow.add("a")
    async with _registrar(cp, timeout=0.2, retry=0.05) as registrar:
        registrar.publish(_instance("a"))
        await asyncio.sleep(0.5)
        cp.slow.clear()
        await eventually(lambda: _registered(cp, "a"), within=1.5, what="registration after the slow calls")


async def test_withdrawal_cuts_the_pause_after_a_failed_round_short() -> None:
    """After a failed round the registrar pauses; a new withdrawal is pushed at once, not after the pause."""
    cp = SlowControlPlane()
    async with _registrar(cp, retry=5.0) as registrar:
        registrar.publish(_instance("a"))
        await eventually(lambda: _registered(cp, "a"), within=2.0)
        cp.down = True
        registrar.publish(_instance("b"))  # fails: the registrar now pauses 5 s
        await asyncio.sleep(0.2)
        cp.down = False
        started = time.monotonic()
        registrar.withdraw("web", "a")
        await eventually(lambda: _absent(cp, "a"), within=3.0, what="the withdrawal")
        assert time.monotonic() - started < 0.3
        await eventually(lambda: _registered(cp, "b"), within=1.0, what="b retried in the same round")


async def _absent(cp: FakeControlPlane, instance_id: str) -> bool:
    return ("web", instance_id) not in cp.instances
