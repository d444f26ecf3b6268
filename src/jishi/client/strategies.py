"""The cluster fault-tolerance strategies (Dubbo's), as async functions over a `Sender`.

    failover    try an instance; on a retryable failure wait the retry policy's backoff and try another one not
                yet tried, up to `retry.max_attempts` tries; with a hedge policy, a slow try gets a second one
                on another instance after the hedge delay and the first success wins (the others are cancelled).
                Every extra try (retry or hedge) must be admitted by the retry budget.
    failfast    one try; its failure is raised at once.
    forking     `forks` tries on different instances at once; the first success wins, the rest are cancelled.
    broadcast   one try on every instance in rotation, all at once; every response is returned, or, if any try
                failed, a ServiceCallError naming each failure.
    (failsafe and failback wrap one of these in the client: see `client.py` and `failback.py`.)

Every failure raised is a `ServiceCallError` (or `ServiceUnavailable` when no instance could be tried) that
lists every try: instance, address, and why. Each function owns the tasks it starts: on return or cancellation
they are cancelled and awaited.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Iterable

import httpx

from jishi.client.sender import Call, Sender, TryFailed
from jishi.core.balancer import Peer
from jishi.core.resilience import HedgePolicy, RetryBudget, RetryPolicy
from jishi.errors import ServiceCallError, ServiceUnavailable

__all__ = ["broadcast", "failfast", "failover", "forking"]

log = logging.getLogger(__name__)

_Task = asyncio.Task[httpx.Response]


def unavailable(sender: Sender, call: Call) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"{call.what}: no instance of service {sender.service!r} is in rotation",
        service=sender.service,
        attempts=call.attempts,
    )


def failed(sender: Sender, call: Call, why: str = "") -> ServiceCallError:
    tries = sum(1 for a in call.attempts if a.error != "circuit breaker open")
    return ServiceCallError(
        f"{call.what} to service {sender.service!r} failed after {tries} tr{'y' if tries == 1 else 'ies'}{why}",
        service=sender.service,
        attempts=call.attempts,
    )


async def failfast(sender: Sender, call: Call) -> httpx.Response:
    peer = sender.pick(call)
    if peer is None:
        raise unavailable(sender, call)
    try:
        return await sender.send(peer, call)
    except TryFailed as exc:
        raise failed(sender, call) from exc


async def failover(
    sender: Sender,
    call: Call,
    *,
    retry: RetryPolicy | None,
    budget: RetryBudget | None,
    hedge: HedgePolicy | None,
    rng: random.Random,
) -> httpx.Response:
    schedule = (retry or RetryPolicy(max_attempts=1)).schedule()
    hedging = hedge.start(sender.clock()) if hedge is not None and call.safe else None
    running: dict[_Task, bool] = {}  # task → it holds a retry-budget slot
    last: TryFailed | None = None

    def launch(holds_budget: bool) -> bool:
        peer = sender.pick(call)
        if peer is None:
            if holds_budget and budget is not None:
                budget.retry_finished()
            return False
        task = asyncio.create_task(sender.send(peer, call), name=f"jishi-client-try-{peer.key}")
        running[task] = holds_budget
        return True

    if budget is not None:
        budget.request_started()
    try:
        if not launch(False):
            raise unavailable(sender, call)
        while True:
            wait = None
            if hedging is not None and hedging.next_at is not None:
                wait = max(0.0, hedging.next_at - sender.clock())
            done, _ = await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # the hedge is due
                if hedging is not None and hedging.try_hedge(sender.clock(), budget) and not launch(True):
                    hedging.settle()  # nobody left to hedge to
                continue
            for task in done:
                if running.pop(task) and budget is not None:
                    budget.retry_finished()
                exc = task.exception()
                if exc is None:
                    if hedging is not None:
                        hedging.settle()
                    return task.result()
                if not isinstance(exc, TryFailed):
                    raise exc
                last = exc
            if running:
                continue  # a hedge (or the first try) is still in flight
            assert last is not None
            if not last.retryable:
                raise failed(sender, call, " (not retried: the call is not idempotent)") from last
            delay = schedule.next_delay(rng)
            if delay is None:
                raise failed(sender, call) from last
            if budget is not None and not budget.try_retry():
                raise failed(sender, call, " (retry budget exhausted)") from last
            await asyncio.sleep(delay)
            if not launch(True):
                if not call.attempts or all(a.error == "circuit breaker open" for a in call.attempts):
                    raise unavailable(sender, call) from last
                raise failed(sender, call, " (no other instance to try)") from last
    finally:
        await _cancel(running, budget)
        if budget is not None:
            budget.request_finished()


async def forking(sender: Sender, call: Call, forks: int) -> httpx.Response:
    peers = _pick_n(sender, call, forks)
    if not peers:
        raise unavailable(sender, call)
    tasks = {asyncio.create_task(sender.send(p, call), name=f"jishi-client-fork-{p.key}"): False for p in peers}
    try:
        while tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                del tasks[task]
                exc = task.exception()
                if exc is None:
                    return task.result()
                if not isinstance(exc, TryFailed):
                    raise exc
        raise failed(sender, call)
    finally:
        await _cancel(tasks, None)


async def broadcast(sender: Sender, call: Call) -> list[httpx.Response]:
    peers = _pick_n(sender, call, len(sender.peers.all()))
    if not peers:
        raise unavailable(sender, call)
    refused = len(call.attempts)
    results = await _gather(sender.send(p, call) for p in peers)
    failures = [r for r in results if isinstance(r, BaseException)]
    for r in failures:
        if not isinstance(r, TryFailed):
            raise r
    if failures or refused:
        raise failed(sender, call, f" ({len(failures) + refused} of {len(peers) + refused} instances failed)")
    return [r for r in results if isinstance(r, httpx.Response)]


def _pick_n(sender: Sender, call: Call, n: int) -> list[Peer]:
    peers: list[Peer] = []
    while len(peers) < n:
        peer = sender.pick(call)
        if peer is None:
            break
        peers.append(peer)
    return peers


async def _gather(coros: Iterable[Awaitable[httpx.Response]]) -> list[httpx.Response | BaseException]:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await _cancel(dict.fromkeys(tasks, False), None)


async def _cancel(tasks: dict[_Task, bool], budget: RetryBudget | None) -> None:
    """Cancel and await every task still running; give back the budget slots they hold."""
    for task in tasks:
        task.cancel()
    for task, holds_budget in list(tasks.items()):
        try:
            await task
        except (asyncio.CancelledError, TryFailed):
            pass  # cancelled here, or a failed try already recorded in the call's attempts
        except Exception:
            log.exception("a try of a service call failed unexpectedly while being cancelled")
        if holds_budget and budget is not None:
            budget.retry_finished()
    tasks.clear()
