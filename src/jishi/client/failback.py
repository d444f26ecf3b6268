"""Failback: a failed call is answered "empty" at once and retried in the background until it succeeds.

Theory of operation
-------------------
`Failback.submit(job)` queues a call (an async function that makes one try of it and raises on failure). The
queue is bounded (`max_queue`): when it is full the new call is dropped and logged as an error (a failback queue
must not grow without bound while a service is down). One owned worker task runs the job that is due first;
after a failure the next try is due after the `retry` policy's backoff (exponential, jittered, capped). The
foreground try counts as the policy's first attempt, so after `retry.max_attempts - 1` background tries the call
is given up and logged. Counters: `succeeded`, `gave_up`,
`dropped`, and `pending` (queued calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from jishi.core.resilience import RetryPolicy, RetrySchedule

__all__ = ["Failback", "FailbackPolicy"]

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class FailbackPolicy:
    max_queue: int = 1000  # calls waiting for a background retry at most; more are dropped (logged)
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=11, base=0.1, cap=5.0))

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError(f"failback max_queue must be at least 1, not {self.max_queue}")


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    what: str = field(compare=False)
    job: Job = field(compare=False)
    schedule: RetrySchedule = field(compare=False)


class Failback:
    """The background retry queue of one client."""

    def __init__(self, policy: FailbackPolicy, *, service: str, rng: random.Random) -> None:
        self.policy = policy
        self.service = service
        self.rng = rng
        self.succeeded = 0
        self.gave_up = 0
        self.dropped = 0
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._heap)

    def submit(self, what: str, job: Job) -> bool:
        """Queue `job` for background retries; False (logged) when the queue is full."""
        if len(self._heap) >= self.policy.max_queue:
            self.dropped += 1
            log.error("%s: failback queue is full (%d calls); dropping %s", self.service, len(self._heap), what)
            return False
        schedule = self.policy.retry.schedule()  # the foreground try was its first attempt
        delay = schedule.next_delay(self.rng)
        if delay is None:
            self.gave_up += 1
            log.error("%s: failback policy allows no background tries; giving up on %s", self.service, what)
            return False
        loop = asyncio.get_running_loop()
        heapq.heappush(self._heap, _Entry(loop.time() + delay, next(self._seq), what, job, schedule))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"jishi-client-failback-{self.service}")
        return True

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._heap:
            log.warning("%s: %d failback calls were still queued at close; dropped", self.service, len(self._heap))
            self.dropped += len(self._heap)
            self._heap.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if not self._heap:
                await self._wake.wait()
                continue
            wait = self._heap[0].due - loop.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            entry = heapq.heappop(self._heap)
            try:
                await entry.job()
            except Exception as exc:
                delay = entry.schedule.next_delay(self.rng)
                if delay is None:
                    self.gave_up += 1
                    log.error(
                        "%s: failback gave up on %s after %d background tries: %s",
                        self.service,
                        entry.what,
                        entry.schedule.attempts,
                        exc,
                    )
                    continue
                log.info("%s: failback retry of %s failed (%s); next in %.2f s", self.service, entry.what, exc, delay)
                entry.due = loop.time() + delay
                heapq.heappush(self._heap, entry)
            else:
                self.succeeded += 1
                log.info("%s: failback retry of %s succeeded", self.service, entry.what)
