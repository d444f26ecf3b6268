"""A stand-in for one gateway worker: asks a shared Redis limit ATTEMPTS times and prints what it was granted.

    python ratelimit_worker.py URL NAME ATTEMPTS START_AT

It waits until the wall clock reads START_AT so that several workers race, then prints one JSON line
`{"admitted": int, "refused": int, "redis": int}`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from jishi.ratelimit import Limit, RedisLimiter


async def main(url: str, name: str, attempts: int, start_at: float) -> None:
    limiter = RedisLimiter.connect(url, Limit.gcra(0.001, max_burst=49), name=name, timeout=1.0, workers=2)
    try:
        await limiter.acquire("warm-up")  # connect before the race
        await asyncio.sleep(max(0.0, start_at - time.time()))
        verdicts = await asyncio.gather(*(limiter.acquire("shared") for _ in range(attempts)))
    finally:
        await limiter.aclose()
    admitted = sum(v.allowed for v in verdicts)
    redis = sum(v.source == "redis" for v in verdicts)
    print(json.dumps({"admitted": admitted, "refused": attempts - admitted, "redis": redis}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
