"""Resilience policies, pure: circuit breaker, bulkhead, rate limiters, retries, budgets, hedging, adaptive limits.

Every policy takes the time as `now: float` (seconds from one monotonic clock) and randomness as an `rng`
argument; none reads a clock, sleeps, locks or does I/O. A shell (the gateway, the client SDK) reads the clock,
asks the policy, and carries out the answer: wait, send, refuse with 429/503 and Retry-After.

    breaker         Breaker, BreakerConfig — resilience4j semantics plus a half-open deadline
    bulkhead        Bulkhead — max concurrent calls, bounded timed wait queue
    windows         FixedWindow, SlidingWindowLog, SlidingWindowCounter
    buckets         TokenBucket, LeakyBucketMeter, LeakyBucketQueue
    gcra            GCRA (redis-cell semantics)
    warmup          WarmUpLimiter (Sentinel's cold factor)
    keyed           KeyedLimiter — one limiter per key, bounded
    retry, budget   RetryPolicy (backoff + jitter), RetryBudget (Envoy)
    hedge           HedgePolicy
    concurrency     ConcurrencyLimiter with AIMDLimit or GradientLimit, in a WindowedLimit
"""

from jishi.core.resilience.breaker import Breaker, BreakerConfig, BreakerMetrics, WindowType
from jishi.core.resilience.breaker_states import BreakerState, BreakerTrigger, IllegalTransition, StateChange
from jishi.core.resilience.buckets import LeakyBucketMeter, LeakyBucketQueue, TokenBucket
from jishi.core.resilience.budget import RetryBudget
from jishi.core.resilience.bulkhead import Admission, Bulkhead
from jishi.core.resilience.concurrency import (
    AIMDLimit,
    ConcurrencyLimiter,
    GradientLimit,
    LimitAlgorithm,
    WindowedLimit,
)
from jishi.core.resilience.gcra import GCRA, Throttle
from jishi.core.resilience.hedge import Hedge, HedgePolicy
from jishi.core.resilience.keyed import KeyedLimiter
from jishi.core.resilience.limiter import ALLOW, Decision, RateLimiter
from jishi.core.resilience.retry import Jitter, RetryPolicy, RetrySchedule
from jishi.core.resilience.warmup import WarmUpLimiter
from jishi.core.resilience.windows import FixedWindow, SlidingWindowCounter, SlidingWindowLog

__all__ = [
    "ALLOW",
    "GCRA",
    "AIMDLimit",
    "Admission",
    "Breaker",
    "BreakerConfig",
    "BreakerMetrics",
    "BreakerState",
    "BreakerTrigger",
    "Bulkhead",
    "ConcurrencyLimiter",
    "Decision",
    "FixedWindow",
    "GradientLimit",
    "Hedge",
    "HedgePolicy",
    "IllegalTransition",
    "Jitter",
    "KeyedLimiter",
    "LeakyBucketMeter",
    "LeakyBucketQueue",
    "LimitAlgorithm",
    "RateLimiter",
    "RetryBudget",
    "RetryPolicy",
    "RetrySchedule",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "StateChange",
    "Throttle",
    "TokenBucket",
    "WarmUpLimiter",
    "WindowType",
    "WindowedLimit",
]
