"""From a route record's policy sections to the objects the gateway's chain runs (`jishi.gateway.policy`).

Everything a request needs is made here once, when a route's record is new or changed: the pure policies of
`jishi.core.resilience`, the rate gate, the compiled rewrite, the route's access log and the fallback's bytes.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jishi.core.resilience import (
    AIMDLimit,
    Breaker,
    BreakerConfig,
    Bulkhead,
    ConcurrencyLimiter,
    GradientLimit,
    LimitAlgorithm,
    WindowedLimit,
    WindowType,
)
from jishi.gateway.accesslog import AccessLog
from jishi.gateway.policy_answers import fallback_bytes
from jishi.gateway.policy_limit import RateGate
from jishi.gateway.policy_rewrite import RequestRewrite, ResponseEdits

if TYPE_CHECKING:
    from jishi.registry.model import Route
    from jishi.registry.policies import AdaptiveConcurrency, BreakerPolicy

__all__ = [
    "BULK",
    "CONC",
    "PERMIT",
    "REFUSED",
    "REPLACED",
    "ROUTE_SECTIONS",
    "WAIT",
    "Compiled",
    "breaker_config",
    "compile_route",
    "concurrency_limiter",
]

# What an exchange holds from the chain: bits of `Exchange.held`.
CONC = 1  # an adaptive-concurrency slot
BULK = 2  # a bulkhead slot
WAIT = 4  # a place in the bulkhead's queue (`Exchange.ticket`)
PERMIT = 8  # a breaker permit (taken at `Exchange.permit_at`)
REFUSED = 16  # the chain refused it itself: permits go back without an outcome
REPLACED = 32  # a fallback replaced its error: the outcome is that error (`Exchange.failed_status`)

# The route record's sections this chain runs (the others belong to load balancing and retries).
ROUTE_SECTIONS = ("rate_limit", "concurrency", "bulkhead", "breaker", "fallback", "rewrite", "access_log")


@dataclass
class Compiled:
    """One route's policies, ready to run."""

    name: str
    spec: Route
    gate: RateGate | None = None
    limiter: ConcurrencyLimiter | None = None
    bulkhead: Bulkhead | None = None
    breaker: Breaker | None = None
    failure_statuses: frozenset[int] = frozenset()
    rewrite: RequestRewrite | None = None
    response_edits: ResponseEdits | None = None
    access_log: AccessLog | None = None
    sample: float = 1.0
    fallback: tuple[int, bytes, bytes] = (200, b"", b"")
    fallback_on: frozenset[str] = field(default_factory=frozenset)


def breaker_config(spec: BreakerPolicy) -> BreakerConfig:
    return BreakerConfig(
        window_type=WindowType(spec.window),
        window_size=spec.window_size,
        minimum_calls=spec.minimum_calls,
        failure_rate_threshold=spec.failure_rate,
        slow_call_rate_threshold=spec.slow_call_rate,
        slow_call_duration=spec.slow_call_duration,
        wait_in_open=spec.wait_in_open,
        open_backoff_multiplier=spec.open_backoff_multiplier,
        max_wait_in_open=spec.max_wait_in_open,
        permitted_calls_in_half_open=spec.permitted_calls_in_half_open,
        max_wait_in_half_open=spec.max_wait_in_half_open,
    )


def concurrency_limiter(spec: AdaptiveConcurrency) -> ConcurrencyLimiter:
    """The adaptive limiter, fed one aggregate sample per window (`WindowedLimit`)."""
    algorithm: LimitAlgorithm
    bounds = {"min_limit": spec.min_limit, "max_limit": spec.max_limit}
    if spec.algorithm == "aimd":
        algorithm = AIMDLimit(spec.initial_limit, **bounds)
    else:
        algorithm = GradientLimit(spec.initial_limit, **bounds)
    return ConcurrencyLimiter(WindowedLimit(algorithm))


def compile_route(spec: Route, workers: int = 1) -> Compiled:
    """Everything the chain of route `spec` needs; `workers` share a Redis limit's local fallback."""
    c = Compiled(spec.name, spec)
    if spec.rate_limit is not None:
        c.gate = RateGate(spec.rate_limit, spec.name, workers)
    if spec.concurrency is not None:
        c.limiter = concurrency_limiter(spec.concurrency)
    if spec.bulkhead is not None:
        b = spec.bulkhead
        queue = b.max_queue if b.max_wait > 0 else 0  # no wait: no queue
        # the wait queue answers every waiter the bulkhead drops (`WaitQueue.reap`)
        c.bulkhead = Bulkhead(b.max_concurrent, queue, b.max_wait, keep_dropped=queue > 0)
    if spec.breaker is not None:
        c.breaker = Breaker(breaker_config(spec.breaker))
        c.failure_statuses = frozenset(spec.breaker.failure_statuses)
    if spec.rewrite is not None:
        rw = spec.rewrite
        if rw.path is not None or rw.request_headers is not None:
            c.rewrite = RequestRewrite(rw, spec.name)
        if rw.response_headers is not None:
            c.response_edits = ResponseEdits(rw.response_headers, spec.name)
    if spec.access_log is not None:
        c.access_log = AccessLog(Path(spec.access_log.path))
        # Written at the latest when the process exits, should the proxy stop without closing its policies.
        atexit.register(c.access_log.close)
        c.sample = spec.access_log.sample
    if spec.fallback is not None:
        c.fallback = fallback_bytes(spec.fallback)
        c.fallback_on = frozenset(spec.fallback.on)
    return c
