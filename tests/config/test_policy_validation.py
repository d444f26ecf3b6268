"""Route policy values that would break the gateway when the route is loaded are refused by the schema, with a
message naming what is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jishi.registry.policies import (
    ActiveHealthCheck,
    AdaptiveConcurrency,
    BreakerPolicy,
    Fallback,
    HeaderEdits,
    RateLimit,
    Rewrite,
)

BAD: list[tuple[type, dict[str, Any], str]] = [
    (AdaptiveConcurrency, {"initial_limit": 50, "max_limit": 10}, "min_limit <= initial_limit <= max_limit"),
    (AdaptiveConcurrency, {"initial_limit": 2, "min_limit": 5}, "min_limit <= initial_limit <= max_limit"),
    (RateLimit, {"requests": 1, "redis": "127.0.0.1:6379"}, "redis://"),
    (RateLimit, {"requests": 1, "redis": "http://cache:6379"}, "redis://"),
    (BreakerPolicy, {"wait_in_open": 30, "max_wait_in_open": 10}, "at least wait_in_open"),
    (Fallback, {"content_type": "text/plain; charset=\u4e2d"}, "latin-1"),
    (Fallback, {"content_type": "text/plain\r\nX-Evil: 1"}, "control characters"),
    (Fallback, {"status": 204, "body": "{}"}, "has no body"),
    (Fallback, {"status": 304, "body": "x"}, "has no body"),
    (Fallback, {"status": 101}, "1xx"),
    (HeaderEdits, {"set": {"X Bad": "1"}}, "not a header name"),
    (HeaderEdits, {"add": {"X-Ok": "a\r\nX-Smuggled: yes"}}, "CR, LF or NUL"),
    (HeaderEdits, {"remove": ["X:Bad"]}, "not a header name"),
    (Rewrite, {"path": "/whoami HTTP/1.1\r\nHost: x"}, "spaces or control characters"),
    (Rewrite, {"path": "/a b"}, "spaces or control characters"),
    (ActiveHealthCheck, {"path": "/healthz HTTP/1.0\r\n"}, "spaces or control characters"),
    (ActiveHealthCheck, {"path": "/h\u00e9\u4e2d"}, "latin-1"),
]


@pytest.mark.parametrize(
    ("model", "fields", "message"), BAD, ids=[f"{m.__name__}-{i}" for i, (m, _, _) in enumerate(BAD)]
)
def test_bad_policy_values_are_refused(model: type, fields: dict[str, Any], message: str) -> None:
    """Each value that validated before but broke the route at load time is now a validation error."""
    with pytest.raises(ValidationError, match=message):
        model(**fields)


def test_good_policy_values_still_validate() -> None:
    """The valid neighbours of the refused values are accepted."""
    AdaptiveConcurrency(initial_limit=10, min_limit=10, max_limit=10)
    RateLimit(requests=1, redis="rediss://cache:6380/1")
    RateLimit(requests=1, redis="unix:///run/redis.sock")
    BreakerPolicy(wait_in_open=10, max_wait_in_open=10)
    Fallback(status=204)
    Fallback(status=503, body="{}", content_type="application/problem+json")
    HeaderEdits(set={"X-Api-Version": "2"}, add={"Cache-Control": "no-store"}, remove=["X-Internal"])
    Rewrite(path="/v2/\\1?x=%20", path_regex="^/(.*)")
    ActiveHealthCheck(path="/healthz?deep=1")
