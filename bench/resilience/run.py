"""Microbenchmark: the cost of one resilience decision in jishi and in the Python peers, in the same run.

    bench/resilience/run                # = uv run --group bench python bench/resilience/run.py
    bench/resilience/run --quick        # fewer rounds, for a smoke test

Each row times a loop of N identical operations, several rounds interleaved across all rows (so background load
hits every row alike), and reports the best round and the median round in µs per operation. Every row pays for
what a real caller pays: reading the clock (jishi's policies take `now` as an argument, so its rows read
`time.monotonic()` themselves; the peers read their clocks inside), calling the protected no-op function where the
peer does, and looking a key up where the peer's only API is keyed (limits). All limits are set high enough that
every decision admits, so each row measures the hot path. The garbage collector is off while timing.

What each row measures:
- breaker (closed path): one protected call of a no-op that succeeds.
  jishi: t0 = clock(); try_acquire(t0); noop(); on_success(t1 = clock(), t1 − t0)  (two clock reads: the breaker
  needs the duration for slow-call detection). pybreaker: breaker.call(noop). purgatory: `with breaker: noop()`
  on a breaker object made once (its cheapest path), and its decorator (`@factory("name")`, a lookup per call).
- token bucket: one admitted permit. jishi TokenBucket.try_acquire(clock()); aiolimiter `await limiter.acquire()`
  in a coroutine loop (its only API that takes capacity).
- GCRA: one admitted permit. jishi GCRA.try_acquire(clock()); the nearest peer is aiolimiter's leaky bucket (no
  Python peer implements GCRA; redis-cell is a Redis module).
- sliding-window counter / fixed window / sliding log: one admitted hit for key "client-1". jishi
  KeyedLimiter(...).try_acquire("client-1", clock()); limits `strategy.hit(item, "client-1")` on MemoryStorage
  (SlidingWindowCounterRateLimiter, FixedWindowRateLimiter, MovingWindowRateLimiter). Windows are 1 minute, but
  1 second for the two logs, which keep every hit of the window (their cost grows with it). The unkeyed jishi
  cost is shown too, for information.

The last line is `RESULT {json}`: each cost in µs (best round), and each jishi row's ratio to its peer
(peer µs / jishi µs: above 1 means jishi is faster).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from jishi.core.resilience import (
    GCRA,
    Breaker,
    BreakerConfig,
    FixedWindow,
    KeyedLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)

try:
    import aiolimiter
    import limits
    import limits.storage
    import limits.strategies
    import purgatory
    import pybreaker
except ImportError as exc:  # pragma: no cover - a setup problem, said plainly
    sys.exit(
        f"bench/resilience needs the peers of the 'bench' dependency group ({exc.name} is missing).\n"
        "  fix: run it as  uv run --group bench python bench/resilience/run.py"
    )

Loop = Callable[[int], None]  # runs the operation n times
HUGE = 10**12


@dataclass
class Row:
    name: str
    what: str
    loop: Loop
    samples: list[float] = field(default_factory=list)  # µs per op, one per round

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def noop() -> int:
    return 1


# -- jishi ---------------------------------------------------------------------------------------------------------


def jishi_breaker() -> Loop:
    b = Breaker(BreakerConfig(window_size=100, minimum_calls=100))
    clock = time.monotonic

    def run(n: int) -> None:
        acquire, success = b.try_acquire, b.on_success
        for _ in range(n):
            t0 = clock()
            if acquire(t0):
                noop()
                t1 = clock()
                success(t1, t1 - t0)

    return run


def jishi_breaker_decision() -> Loop:
    b = Breaker(BreakerConfig(window_size=100, minimum_calls=100))

    def run(n: int) -> None:
        acquire, success = b.try_acquire, b.on_success
        for _ in range(n):
            if acquire(1.0):
                success(1.0, 0.001)

    return run


def jishi_limiter(
    make: Callable[[], TokenBucket | GCRA | SlidingWindowCounter | FixedWindow | SlidingWindowLog],
) -> Loop:
    lim = make()
    clock = time.monotonic

    def run(n: int) -> None:
        acquire = lim.try_acquire
        for _ in range(n):
            acquire(clock())

    return run


def jishi_keyed(make: Callable[[], SlidingWindowCounter | FixedWindow | SlidingWindowLog]) -> Loop:
    keyed: KeyedLimiter[str, SlidingWindowCounter | FixedWindow | SlidingWindowLog] = KeyedLimiter(make, 10_000)
    clock = time.monotonic

    def run(n: int) -> None:
        acquire = keyed.try_acquire
        for _ in range(n):
            acquire("client-1", clock())

    return run


# -- peers ---------------------------------------------------------------------------------------------------------


def pybreaker_call() -> Loop:
    cb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)

    def run(n: int) -> None:
        call = cb.call
        for _ in range(n):
            call(noop)

    return run


def purgatory_context() -> Loop:
    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5)
    brk = factory.get_breaker("catalog")

    def run(n: int) -> None:
        for _ in range(n):
            with brk:
                noop()

    return run


def purgatory_decorator() -> Loop:
    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5)
    protected = factory("catalog")(noop)

    def run(n: int) -> None:
        for _ in range(n):
            protected()

    return run


def aiolimiter_acquire(loop: asyncio.AbstractEventLoop) -> Loop:
    limiter = aiolimiter.AsyncLimiter(HUGE, 1)

    async def many(n: int) -> None:
        acquire = limiter.acquire
        for _ in range(n):
            await acquire()

    def run(n: int) -> None:
        loop.run_until_complete(many(n))

    return run


def limits_hit(strategy: type[limits.strategies.RateLimiter], per_second: bool = False) -> Loop:
    storage = limits.storage.MemoryStorage()
    limiter = strategy(storage)
    item = limits.RateLimitItemPerSecond(HUGE) if per_second else limits.RateLimitItemPerMinute(HUGE)

    def run(n: int) -> None:
        hit = limiter.hit
        for _ in range(n):
            hit(item, "client-1")

    return run


# -- the run -------------------------------------------------------------------------------------------------------

PAIRS = [  # (jishi row, peer row) for the ratios; the peer is the fastest of the named peer rows
    ("breaker", "jishi breaker, closed path", ["pybreaker", "purgatory (with breaker)", "purgatory (decorator)"]),
    ("token_bucket", "jishi token bucket", ["aiolimiter"]),
    ("gcra", "jishi GCRA", ["aiolimiter"]),
    ("sliding_window_counter", "jishi sliding-window counter (keyed)", ["limits sliding-window counter"]),
    ("fixed_window", "jishi fixed window (keyed)", ["limits fixed window"]),
    ("sliding_window_log", "jishi sliding-window log (keyed)", ["limits moving window"]),
]


def build(loop: asyncio.AbstractEventLoop) -> list[Row]:
    window = 60.0
    return [
        Row("jishi breaker, closed path", "try_acquire + noop() + on_success, 2 clock reads", jishi_breaker()),
        Row("jishi breaker, decision only", "try_acquire + on_success, fixed now (info)", jishi_breaker_decision()),
        Row("pybreaker", "CircuitBreaker.call(noop)", pybreaker_call()),
        Row("purgatory (with breaker)", "with breaker: noop()", purgatory_context()),
        Row("purgatory (decorator)", "@factory('catalog') noop()", purgatory_decorator()),
        Row("jishi token bucket", "try_acquire(clock())", jishi_limiter(lambda: TokenBucket(1e12, 1e12))),
        Row("jishi GCRA", "try_acquire(clock())", jishi_limiter(lambda: GCRA(1e12, 10**9))),
        Row("aiolimiter", "await AsyncLimiter.acquire()", aiolimiter_acquire(loop)),
        Row(
            "jishi sliding-window counter (keyed)",
            "KeyedLimiter.try_acquire(key, clock())",
            jishi_keyed(lambda: SlidingWindowCounter(HUGE, window)),
        ),
        Row(
            "jishi sliding-window counter",
            "try_acquire(clock()), no key (info)",
            jishi_limiter(lambda: SlidingWindowCounter(HUGE, window)),
        ),
        Row(
            "limits sliding-window counter",
            "SlidingWindowCounterRateLimiter.hit(item, key)",
            limits_hit(limits.strategies.SlidingWindowCounterRateLimiter),
        ),
        Row(
            "jishi fixed window (keyed)",
            "KeyedLimiter.try_acquire(key, clock())",
            jishi_keyed(lambda: FixedWindow(HUGE, window)),
        ),
        Row(
            "limits fixed window",
            "FixedWindowRateLimiter.hit(item, key)",
            limits_hit(limits.strategies.FixedWindowRateLimiter),
        ),
        Row(
            "jishi sliding-window log (keyed)",
            "KeyedLimiter.try_acquire(key, clock())",
            jishi_keyed(lambda: SlidingWindowLog(HUGE, 1.0)),
        ),
        Row(
            "limits moving window",
            "MovingWindowRateLimiter.hit(item, key)",
            limits_hit(limits.strategies.MovingWindowRateLimiter, per_second=True),
        ),
    ]


def measure(rows: list[Row], rounds: int, budget_s: float) -> None:
    # calibrate: about budget_s / (rounds × rows) seconds per measurement
    per_measure = budget_s / (rounds * len(rows))
    sizes = {}
    for row in rows:
        row.loop(200)  # warm up
        t0 = time.perf_counter()
        row.loop(2000)
        cost = (time.perf_counter() - t0) / 2000
        sizes[row.name] = max(2000, int(per_measure / cost))
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for row in rows:
                n = sizes[row.name]
                t0 = time.perf_counter_ns()
                row.loop(n)
                row.samples.append((time.perf_counter_ns() - t0) / n / 1000.0)
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=30.0, help="total time budget of the timed part")
    parser.add_argument("--quick", action="store_true", help="3 rounds in about 5 seconds")
    args = parser.parse_args()
    rounds, seconds = (3, 5.0) if args.quick else (args.rounds, args.seconds)

    loop = asyncio.new_event_loop()
    try:
        rows = build(loop)
        measure(rows, rounds, seconds)
    finally:
        loop.close()
    by_name = {r.name: r for r in rows}

    print(f"per-decision cost, µs per operation ({rounds} interleaved rounds; best and median round)\n")
    print(f"{'row':38} {'best':>7} {'median':>7}   measures")
    for r in rows:
        print(f"{r.name:38} {r.best:7.3f} {r.median:7.3f}   {r.what}")

    costs = {r.name: round(r.best, 4) for r in rows}
    ratios, lines = {}, []
    for key, mine, peers in PAIRS:
        peer = min(peers, key=lambda p: by_name[p].best)
        ratio = by_name[peer].best / by_name[mine].best
        ratios[f"{key}_vs_{peer}"] = round(ratio, 2)
        lines.append(f"{mine:38} {by_name[mine].best:7.3f} µs   {peer}: {by_name[peer].best:7.3f} µs   ×{ratio:.1f}")
    print("\njishi against the fastest peer of each row (ratio = peer / jishi; above 1: jishi is faster)\n")
    print("\n".join(lines))
    jishi_rows = [mine for _, mine, _ in PAIRS[:4]]  # the hot paths with a ≤ 1 µs target
    under_1us = all(by_name[m].best <= 1.0 for m in jishi_rows)
    faster = all(r > 1.0 for r in ratios.values())
    verdict = "met" if under_1us else "NOT met"
    print(f"\ntarget ≤ 1 µs on the breaker, token bucket, GCRA and sliding-window counter: {verdict}")
    print(f"faster than every peer: {'yes' if faster else 'NO'}")
    result = {
        "unit": "us",
        "rounds": rounds,
        "costs": costs,
        "ratios": ratios,
        "under_1us": under_1us,
        "faster_than_every_peer": faster,
    }
    print("RESULT " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
