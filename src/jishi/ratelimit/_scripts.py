"""The Lua scripts that decide a limit inside Redis, one atomic round trip per decision.

Theory of operation
-------------------
Each script takes `KEYS[1]` (the limited key) and `ARGV = now, n, <the algorithm's parameters>`, and answers
`{allowed (0/1), retry_after (string), remaining}`. The math is line for line that of the pure limiter of the same
name in `jishi.core.resilience` (`GCRA`, `TokenBucket`, `SlidingWindowCounter`), with the same 1 ns tolerance,
so the same requests at the same times get the same answers from either.

- Time: an empty `now` means Redis's own clock (`redis.call('TIME')`), so every worker of every gateway agrees on
  it; it is counted from 2020-09-13 (Unix time 1.6e9) to keep 30 ns of float resolution. A given `now` (seconds,
  any origin) replays a decision at a fixed time, which is how the tests compare the scripts with the core.
- Floats leave the script as strings (`%.17g`, exact), because Redis truncates Lua numbers to integers.
  An infinite Retry-After (the request is larger than the limit can ever hold) is the string `inf`.
- A refusal writes nothing. An admission writes the key with a TTL of the time until the limiter would be back to
  its initial state, so an idle key vanishes and a missing key means exactly "fresh".
- `Script` sends EVALSHA and, the first time a server does not know the script (NOSCRIPT: a restart, a failover,
  SCRIPT FLUSH), EVAL with the source, which also caches it there: still one round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from jishi.ratelimit._limit import Algorithm

__all__ = ["SCRIPTS", "Script"]

_PRELUDE = """
local key = KEYS[1]
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = (tonumber(t[1]) - 1600000000) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local n = tonumber(ARGV[2])
local EPS = 1e-9
local function num(x)
  if x == math.huge then return 'inf' end
  return string.format('%.17g', x)
end
local function ttl_ms(seconds)
  return math.max(1, math.ceil(seconds * 1000) + 1)
end
"""

_GCRA = """
local interval = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', key))
if tat == nil or tat < now then tat = now end
local new_tat = tat + n * interval
local allow_at = new_tat - tolerance
local allowed, retry = 0, 0
if now + EPS >= allow_at then
  allowed = 1
  tat = new_tat
  redis.call('SET', key, num(new_tat), 'PX', ttl_ms(new_tat - now))
elseif n * interval > tolerance + EPS then
  retry = math.huge
else
  retry = allow_at - now
end
local left = tolerance - (tat - now)
local remaining = 0
if left > -interval then remaining = math.floor((left + EPS) / interval) end
if remaining < 0 then remaining = 0 end
return {allowed, num(retry), remaining}
"""

_TOKEN_BUCKET = """
local rate = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local state = redis.call('HMGET', key, 't', 'l')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
  last = now
elseif now > last then
  tokens = tokens + (now - last) * rate
  if tokens > burst then tokens = burst end
  last = now
end
local allowed, retry = 0, 0
if tokens + EPS >= n then
  allowed = 1
  tokens = tokens - n
  redis.call('HSET', key, 't', num(tokens), 'l', num(last))
  redis.call('PEXPIRE', key, ttl_ms((burst - tokens) / rate))
elseif n > burst then
  retry = math.huge
else
  retry = (n - tokens) / rate
end
return {allowed, num(retry), math.floor(tokens + EPS)}
"""

_SLIDING_WINDOW = """
local limit = tonumber(ARGV[3])
local w = tonumber(ARGV[4])
local state = redis.call('HMGET', key, 's', 'p', 'c')
local start = tonumber(state[1])
local prev = tonumber(state[2]) or 0
local cur = tonumber(state[3]) or 0
if start == nil or now >= start + w - EPS then
  local new_start = math.floor((now + EPS) / w) * w
  if start ~= nil and new_start - start < w + EPS then prev = cur else prev = 0 end
  cur = 0
  start = new_start
end
local function estimate(c)
  if prev == 0 then return c end
  return prev * (1.0 - (now - start) / w) + c
end
local allowed, retry = 0, 0
if (prev == 0 or estimate(cur + n) <= limit + EPS) and cur + n <= limit then
  allowed = 1
  cur = cur + n
  redis.call('HSET', key, 's', num(start), 'p', prev, 'c', cur)
  redis.call('PEXPIRE', key, ttl_ms(start + 2 * w - now))
elseif n > limit then
  retry = math.huge
else
  local room = limit - cur - n
  if room >= 0 and prev > 0 then
    retry = math.max(0, start + w * (1.0 - room / prev) - now)
  else
    room = limit - n
    if cur <= room then
      retry = math.max(0, start + w - now)
    else
      retry = math.max(0, start + w + w * (1.0 - room / cur) - now)
    end
  end
end
local remaining = math.floor(limit - estimate(cur) + EPS)
if remaining > limit - cur then remaining = limit - cur end
if remaining < 0 then remaining = 0 end
return {allowed, num(retry), remaining}
"""


class Script:
    """A Lua script run by EVALSHA, with EVAL (which caches it) when the server answers NOSCRIPT."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[object]) -> Any:
        """Run the script on `client` (a `redis.asyncio.Redis`) with `keys` and `args`."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


SCRIPTS: dict[Algorithm, Script] = {
    Algorithm.GCRA: Script("gcra", _PRELUDE + _GCRA),
    Algorithm.TOKEN_BUCKET: Script("token_bucket", _PRELUDE + _TOKEN_BUCKET),
    Algorithm.SLIDING_WINDOW: Script("sliding_window", _PRELUDE + _SLIDING_WINDOW),
}
