"""The parts of the route policy chain on their own: Retry-After rounding, the limiters a section makes, request
keys, header edits, breaker refusals and what `attach` builds."""

from __future__ import annotations

import math

import pytest

from jishi.core.resilience import GCRA, Breaker, BreakerConfig, FixedWindow, LeakyBucketMeter, TokenBucket
from jishi.core.resilience import SlidingWindowCounter as SWC
from jishi.gateway import policy_breaker
from jishi.gateway.exchange import Exchange
from jishi.gateway.policy_answers import retry_after_header
from jishi.gateway.policy_build import ROUTE_SECTIONS, compile_route
from jishi.gateway.policy_limit import _key_function, local_limiter, redis_limit
from jishi.gateway.policy_rewrite import RequestRewrite, ResponseEdits
from jishi.ratelimit import Algorithm
from jishi.registry.model import Route, RouteBackend
from jishi.registry.policies import BulkheadPolicy, HeaderEdits, RateLimit, Rewrite


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0.001, 1), (0.999, 1), (1.0, 1), (1.0000000001, 1), (1.01, 2), (719.9, 720), (math.inf, 3600)],
)
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: int) -> None:
    """Retry-After rounds up (forgiving float noise of 1 ns), never says 0, and caps an endless wait at an hour."""
    assert retry_after_header(seconds) == header


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [
        ("token_bucket", TokenBucket),
        ("gcra", GCRA),
        ("sliding_window", SWC),
        ("fixed_window", FixedWindow),
        ("leaky_bucket", LeakyBucketMeter),
    ],
)
def test_each_algorithm_makes_its_core_limiter_admitting_burst_then_refusing(algorithm: str, kind: type) -> None:
    """`requests: 4, period: 2s` makes the core limiter of that name; it admits 4 at once, then refuses with a
    positive wait (a sliding window's estimate can ask for up to two periods)."""
    limiter = local_limiter(RateLimit(algorithm=algorithm, requests=4, period=2))  # type: ignore[arg-type]
    assert isinstance(limiter, kind)
    assert [limiter.try_acquire(10.0)[0] for _ in range(5)] == [True] * 4 + [False]
    assert 0 < limiter.try_acquire(10.0)[1] <= 4.0


def test_redis_runs_leaky_bucket_as_gcra_and_fixed_window_as_sliding_window() -> None:
    """Redis has three algorithms: the other two map onto the nearest one."""
    assert redis_limit(RateLimit(algorithm="leaky_bucket", requests=10)).algorithm is Algorithm.GCRA
    assert redis_limit(RateLimit(algorithm="fixed_window", requests=10)).algorithm is Algorithm.SLIDING_WINDOW
    bucket = redis_limit(RateLimit(requests=10, period=2, burst=3))
    assert (bucket.algorithm, bucket.rate, bucket.burst) == (Algorithm.TOKEN_BUCKET, 5.0, 3.0)


class _Client:
    client_ip = b"10.0.0.7"


def _exchange(headers: list[tuple[bytes, bytes]], path: bytes = b"/a?b=1") -> Exchange:
    ex = Exchange(0.0, path)
    ex.path = path
    for name, value in headers:
        ex.lines += (name, b": ", value, b"\r\n")
    return ex


def test_request_keys() -> None:
    """Keys: the client IP, a header (any case), a cookie among others, the path without query, one per route;
    a missing header or cookie is the shared key "-"."""
    ex = _exchange([(b"x-api-key", b"k1"), (b"Cookie", b"a=1; Session=s9; b=2")])
    client = _Client()
    assert _key_function("ip")(client, ex) == b"10.0.0.7"  # type: ignore[arg-type]
    assert _key_function("header:X-Api-Key")(client, ex) == b"k1"  # type: ignore[arg-type]
    assert _key_function("header:X-Other")(client, ex) == b"-"  # type: ignore[arg-type]
    assert _key_function("cookie:session")(client, ex) == b"s9"  # type: ignore[arg-type]
    assert _key_function("cookie:none")(client, ex) == b"-"  # type: ignore[arg-type]
    assert _key_function("path")(client, ex) == b"/a"  # type: ignore[arg-type]
    assert _key_function("route")(client, ex) == b"-"  # type: ignore[arg-type]


def test_rewrite_path_and_headers_on_an_exchange() -> None:
    """The regex replaces its first match in the path (query kept); set replaces all lines of a name, add appends,
    remove drops — names case-insensitive."""
    rewrite = RequestRewrite(
        Rewrite(
            path_regex=r"^/old/([a-z]+)",
            path=r"/new/\1",
            request_headers=HeaderEdits(set={"X-A": "1"}, add={"X-B": "2"}, remove=["x-c"]),
        ),
        "r",
    )
    ex = _exchange([(b"x-a", b"0"), (b"X-A", b"00"), (b"X-C", b"gone"), (b"X-B", b"1")], b"/old/items/7?q=1")
    rewrite.apply(ex)
    assert ex.path == b"/new/items/7?q=1"
    assert b"".join(ex.lines) == b"X-B: 1\r\nX-A: 1\r\nX-B: 2\r\n"


def test_response_edits_return_a_new_list() -> None:
    """Response edits leave the instance connection's own list alone."""
    edits = ResponseEdits(HeaderEdits(remove=["Server"], add={"X-Gw": "jishi"}), "r")
    lines = [b"Server", b": ", b"x", b"\r\n", b"Content-Length", b": ", b"2", b"\r\n"]
    out = edits.apply(lines)
    assert b"".join(out) == b"Content-Length: 2\r\nX-Gw: jishi\r\n"
    assert len(lines) == 8


def test_breaker_refusal_says_when_to_come_back() -> None:
    """Open: the rest of the wait; half-open with every probe out: 1 s; forced open: no time."""
    breaker = Breaker(BreakerConfig(wait_in_open=10, permitted_calls_in_half_open=1))
    breaker.open(100.0)
    assert policy_breaker.refusal(breaker, 103.0)[1] == pytest.approx(7.0)
    assert breaker.try_acquire(110.0)  # half-open: the one probe
    assert not breaker.try_acquire(110.5)
    assert policy_breaker.refusal(breaker, 110.5)[1] == 1.0
    breaker.force_open(111.0)
    assert policy_breaker.refusal(breaker, 111.0)[1] is None
    events = policy_breaker.changes(breaker, "r", 1000.0)
    assert [(e.labels["to"], e.time) for e in events] == [
        ("open", 1100.0),
        ("half_open", 1110.0),
        ("forced_open", 1111.0),
    ]
    assert events[0].level == "warning" and events[1].level == "info"


def test_compile_route_builds_only_the_sections_given() -> None:
    """Only the named sections are built; a bulkhead queue without a wait is no queue."""
    route = Route(
        name="r", backends=[RouteBackend(service="s")], bulkhead=BulkheadPolicy(max_concurrent=2, max_queue=5)
    )
    c = compile_route(route)
    assert c.bulkhead is not None and c.bulkhead.max_queue == 0
    assert (c.gate, c.breaker, c.limiter, c.rewrite, c.access_log) == (None, None, None, None, None)
    assert set(ROUTE_SECTIONS) <= set(Route.model_fields)
