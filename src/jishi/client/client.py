"""`Client`: calls one service over HTTP with discovery, balancing and resilience.

    directory ──► PeerSet (balancer + a breaker per instance) ──► Sender (one try) ◄── strategy (failover…)
                                                                                  ◄── bulkhead gate, failback

A call goes through the bulkhead (if any), then the client's strategy:

    FAILOVER   (default) tries, retries elsewhere on retryable failures, hedges slow tries (see strategies.py)
    FAILFAST   one try, its failure raised at once
    FAILSAFE   as FAILOVER, but a failure is logged and an *empty* response returned instead of raised
    FAILBACK   one try; on failure an empty response at once and the call is retried in the background
    FORKING    `forks` instances at once, the first success wins
    BROADCAST  every instance in rotation; `request` returns the last response (as Dubbo does), `broadcast`
               returns them all; any failure is raised

An *empty* response is a synthetic `204 No Content` with the header `x-jishi-empty: <strategy>` and the error in
`response.extensions["jishi_error"]`; `is_empty(response)` tells it from a real answer. Only GET, HEAD, OPTIONS,
PUT, DELETE and TRACE are retried or hedged after they may have reached an instance (connect failures are always
retried); `idempotent=True` on a call, or `retry_non_idempotent=True` on the client, says a POST is safe too.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Any

import httpx

from jishi.client.directory import ServiceDirectory
from jishi.client.failback import Failback, FailbackPolicy
from jishi.client.gate import BulkheadGate
from jishi.client.peers import PeerSet
from jishi.client.sender import DEFAULT_FAILURE_STATUSES, IDEMPOTENT_METHODS, Call, Sender
from jishi.client.strategies import broadcast, failfast, failover, forking
from jishi.core.resilience import BreakerConfig, Bulkhead, HedgePolicy, RetryBudget, RetryPolicy
from jishi.errors import ServiceCallError

__all__ = ["EMPTY_HEADER", "Client", "Strategy", "is_empty"]

log = logging.getLogger(__name__)

EMPTY_HEADER = "x-jishi-empty"


class Strategy(enum.StrEnum):
    FAILOVER = "failover"
    FAILFAST = "failfast"
    FAILSAFE = "failsafe"
    FAILBACK = "failback"
    FORKING = "forking"
    BROADCAST = "broadcast"


def is_empty(response: httpx.Response) -> bool:
    """True for the stand-in response FAILSAFE and FAILBACK return when a call failed."""
    return EMPTY_HEADER in response.headers


class Client:
    """Calls to one service; see the module doc. Use `async with Client(...)` or call `aclose()`."""

    def __init__(
        self,
        directory: ServiceDirectory,
        service: str,
        *,
        strategy: Strategy | str = Strategy.FAILOVER,
        timeout: float = 5.0,
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - frozen, shared safely
        breaker: BreakerConfig | None = None,
        budget: RetryBudget | None = None,
        hedge: HedgePolicy | None = None,
        bulkhead: Bulkhead | None = None,
        forks: int = 2,
        failback: FailbackPolicy | None = None,
        failure_statuses: Collection[int] = DEFAULT_FAILURE_STATUSES,
        retry_non_idempotent: bool = False,
        fail_timeout: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if forks < 1:
            raise ValueError(f"forks must be at least 1, not {forks}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, not {timeout!r}")
        self.directory = directory
        self.service = service
        self.strategy = Strategy(strategy)
        self.retry = retry
        self.budget = budget
        self.hedge = hedge
        self.forks = forks
        self.retry_non_idempotent = retry_non_idempotent
        self.rng = rng or random.Random()
        self.peers = PeerSet(directory, service, breaker=breaker, fail_timeout=fail_timeout)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
        self._http = httpx.AsyncClient(transport=transport, limits=limits, trust_env=False)
        self.sender = Sender(self._http, self.peers, timeout=timeout, failure_statuses=failure_statuses, clock=clock)
        self.gate = BulkheadGate(bulkhead, service=service, clock=clock) if bulkhead is not None else None
        self.failback = Failback(failback or FailbackPolicy(), service=service, rng=self.rng)

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop background retries and close the connections."""
        await self.failback.aclose()
        await self._http.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- calls ---------------------------------------------------------------------------------------------------

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def request(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> httpx.Response:
        """Call `method path` on an instance of the service by the client's strategy; `kwargs` go to httpx."""
        if self.strategy is Strategy.BROADCAST:
            return (await self.broadcast(method, path, idempotent=idempotent, **kwargs))[-1]
        call = self._call(method, path, idempotent, kwargs)
        if self.gate is None:
            return await self._run(call)
        async with self.gate:
            return await self._run(call)

    async def broadcast(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> list[httpx.Response]:
        """Call every instance in rotation at once; all responses, or a ServiceCallError naming each failure."""
        call = self._call(method, path, idempotent, kwargs)
        await self._wait_ready()
        if self.gate is None:
            return await broadcast(self.sender, call)
        async with self.gate:
            return await broadcast(self.sender, call)

    def _call(self, method: str, path: str, idempotent: bool | None, kwargs: dict[str, Any]) -> Call:
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', not {path!r}")
        safe = idempotent if idempotent is not None else (method in IDEMPOTENT_METHODS or self.retry_non_idempotent)
        return Call(method, path, kwargs, safe)

    async def _wait_ready(self) -> None:
        """Before the directory knows anything (just started, no cache), wait for it up to one timeout."""
        if not self.directory.ready.is_set():
            try:
                async with asyncio.timeout(self.sender.timeout):
                    await self.directory.ready.wait()
            except TimeoutError:
                log.warning("%s: the service directory has learned nothing yet", self.service)

    async def _run(self, call: Call) -> httpx.Response:
        await self._wait_ready()
        s = self.strategy
        if s is Strategy.FAILFAST:
            return await failfast(self.sender, call)
        if s is Strategy.FORKING:
            return await forking(self.sender, call, self.forks)
        if s is Strategy.FAILBACK:
            try:
                return await failfast(self.sender, call)
            except ServiceCallError as exc:
                log.warning("%s: %s failed (%s); retrying it in the background", self.service, call.what, exc)
                self.failback.submit(call.what, lambda: self._retry_in_background(call))
                return _empty(s, call, exc)
        try:
            return await failover(
                self.sender, call, retry=self.retry, budget=self.budget, hedge=self.hedge, rng=self.rng
            )
        except ServiceCallError as exc:
            if s is not Strategy.FAILSAFE:
                raise
            log.warning("%s: %s failed; returning an empty response (failsafe): %s", self.service, call.what, exc)
            return _empty(s, call, exc)

    async def _retry_in_background(self, call: Call) -> None:
        await failfast(self.sender, Call(call.method, call.path, call.kwargs, call.safe))


def _empty(strategy: Strategy, call: Call, error: ServiceCallError) -> httpx.Response:
    return httpx.Response(
        204,
        headers={EMPTY_HEADER: strategy.value},
        request=httpx.Request(call.method, call.path),
        extensions={"jishi_error": error},
    )
