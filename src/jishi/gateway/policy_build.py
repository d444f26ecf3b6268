"""From a route record's policy sections to the objects the gateway's chain runs (`jishi.gateway.policy`).

Everything a request needs is made here once, when a route's record is new or changed: the pure policies of
`jishi.core.resilience`, the rate gate, the compiled rewrite, the route's access log and the fallback's bytes.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable
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

log = logging.getLogger(__name__)

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
    broken: tuple[str, ...] = ()  # sections that could not be built: the route's requests are refused


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
    """Everything the chain of route `spec` needs; `workers` share a Redis limit's local fallback.

    Each section is built on its own: one that fails is logged (route and section) and named in
    `Compiled.broken`, and the chain then refuses the route's requests (503 policy_error) rather than serve
    them without their policies."""
    c = Compiled(spec.name, spec)
    broken: list[str] = []
    for section, build in _SECTIONS:
        if getattr(spec, section) is None:
            continue
        try:
            build(c, spec, workers)
        except Exception:
            log.exception(
                "route %s: its %s policy could not be set up; the route's requests are refused (503 policy_error)",
                spec.name,
                section,
            )
            broken.append(section)
    c.broken = tuple(broken)
    return c


def _rate_limit(c: Compiled, spec: Route, workers: int) -> None:
    assert spec.rate_limit is not None
    c.gate = RateGate(spec.rate_limit, spec.name, workers)


def _concurrency(c: Compiled, spec: Route, workers: int) -> None:
    assert spec.concurrency is not None
    c.limiter = concurrency_limiter(spec.concurrency)


def _bulkhead(c: Compiled, spec: Route, workers: int) -> None:
    b = spec.bulkhead
    assert b is not None
    queue = b.max_queue if b.max_wait > 0 else 0  # no wait: no queue
    # the wait queue answers every waiter the bulkhead drops (`WaitQueue.reap`)
    c.bulkhead = Bulkhead(b.max_concurrent, queue, b.max_wait, keep_dropped=queue > 0)


def _breaker(c: Compiled, spec: Route, workers: int) -> None:
    assert spec.breaker is not None
    c.breaker = Breaker(breaker_config(spec.breaker))
    c.failure_statuses = frozenset(spec.breaker.failure_statuses)


def _rewrite(c: Compiled, spec: Route, workers: int) -> None:
    rw = spec.rewrite
    assert rw is not None
    if rw.path is not None or rw.request_headers is not None:
        c.rewrite = RequestRewrite(rw, spec.name)
    if rw.response_headers is not None:
        c.response_edits = ResponseEdits(rw.response_headers, spec.name)


def _access_log(c: Compiled, spec: Route, workers: int) -> None:
    assert spec.access_log is not None
    c.access_log = AccessLog(Path(spec.access_log.path))
    # Written at the latest when the process exits, should the proxy stop without closing its policies.
    atexit.register(c.access_log.close)
    c.sample = spec.access_log.sample


def _fallback(c: Compiled, spec: Route, workers: int) -> None:
    assert spec.fallback is not None
    c.fallback = fallback_bytes(spec.fallback)
    c.fallback_on = frozenset(spec.fallback.on)


_SECTIONS: tuple[tuple[str, Callable[[Compiled, Route, int], None]], ...] = (
    ("rate_limit", _rate_limit),
    ("concurrency", _concurrency),
    ("bulkhead", _bulkhead),
    ("breaker", _breaker),
    ("rewrite", _rewrite),
    ("access_log", _access_log),
    ("fallback", _fallback),
)
