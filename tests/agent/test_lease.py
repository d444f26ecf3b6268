"""The lease keeper against a slow control plane: keep-alives never let the lease run past its TTL."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import cast

from agent_harness import eventually

from jishi.agent.lease import LeaseKeeper
from jishi.registry.protocol import ControlPlane


class SlowLeases:
    """Grants one lease; the keep-alives numbered in `slow` take `delay` seconds. Records every renewal."""

    def __init__(self, slow: set[int], delay: float) -> None:
        self.slow, self.delay = slow, delay
        self.calls = itertools.count(1)
        self.renewed: list[float] = []

    async def grant_lease(self, ttl: float) -> int:
        self.renewed.append(time.monotonic())
        return 7

    async def keepalive(self, lease_id: int) -> float:
        if next(self.calls) in self.slow:
            await asyncio.sleep(self.delay)
        self.renewed.append(time.monotonic())
        return 1.0

    async def revoke_lease(self, lease_id: int) -> None:
        pass


async def _granted(lease_id: int) -> None:
    pass


async def test_slow_keepalive_is_abandoned_and_retried_within_the_ttl() -> None:
    """A keep-alive hanging for longer than the TTL is given up after TTL/3 and retried: no renewal gap ≥ TTL."""
    ttl = 1.2
    cp = SlowLeases(slow={1}, delay=5.0)
    keeper = LeaseKeeper(cast(ControlPlane, cp), lambda: ttl, _granted)
    task = asyncio.create_task(keeper.run())
    try:
        await asyncio.sleep(3.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    times = [*cp.renewed, time.monotonic()]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(cp.renewed) >= 4, cp.renewed
    assert max(gaps) < ttl, gaps


async def test_failed_keepalive_is_retried_sooner_than_the_regular_interval() -> None:
    """An error answer is retried after a short pause, not after a whole TTL/3."""
    ttl = 3.0

    class Failing(SlowLeases):
        async def keepalive(self, lease_id: int) -> float:
            if next(self.calls) == 1:
                raise OSError("connection reset (test)")
            self.renewed.append(time.monotonic())
            return ttl

    cp = Failing(set(), 0.0)
    keeper = LeaseKeeper(cast(ControlPlane, cp), lambda: ttl, _granted, retry=0.2)
    task = asyncio.create_task(keeper.run())
    try:
        await eventually(lambda: _renewed(cp, 2), within=3.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert cp.renewed[1] - cp.renewed[0] < 1.0 + 0.2 + 0.3  # the first try at TTL/3, the retry 0.2 s later


async def _renewed(cp: SlowLeases, n: int) -> bool:
    return len(cp.renewed) >= n
