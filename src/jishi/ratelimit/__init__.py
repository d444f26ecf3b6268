"""Distributed rate limiting on Redis, with a local fallback and a shadow mode.

    limiter = RedisLimiter.connect("redis://127.0.0.1:6379/0", Limit.gcra(rate=100, max_burst=19),
                                   name="api", workers=4)
    verdict = await limiter.acquire(client_ip)        # Verdict(allowed, retry_after, remaining, source, shadowed)
    if not verdict.allowed: ...                       # 429, Retry-After: ceil(verdict.retry_after)
    await limiter.aclose()

    _limit      Limit, Algorithm — the global limit (GCRA, token bucket, sliding-window counter) and its local share
    _scripts    the Lua scripts: one atomic round trip per decision on Redis's clock, same math as the pure core
    _link       Link, LinkState — pure circuit breaker on the Redis connection (UP / DOWN for a cool-down / PROBING)
    _limiter    RedisLimiter, Verdict, LimiterStats — the asyncio shell: Redis, else local, optionally shadow only

See docs/ratelimit.md.
"""

from jishi.ratelimit._limit import Algorithm, Limit
from jishi.ratelimit._limiter import LimiterStats, RedisLimiter, Verdict
from jishi.ratelimit._link import Link, LinkState

__all__ = ["Algorithm", "Limit", "LimiterStats", "Link", "LinkState", "RedisLimiter", "Verdict"]
