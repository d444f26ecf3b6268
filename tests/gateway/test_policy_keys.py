"""Request keys of route policies (a rate limit's key, ring_hash's hash_on) and values checked when a route is
loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route
from pydantic import ValidationError

from jishi.gateway import policy
from jishi.registry.model import Route
from jishi.registry.policies import LoadBalancing, RateLimit, Rewrite


@pytest.fixture
async def gw(gateway: GatewayUnderTest) -> AsyncIterator[GatewayUnderTest]:
    """The in-process gateway whose route policies are closed at the end."""
    yield gateway
    await policy.close(gateway.proxy.table)


async def test_rate_limit_keyed_by_forwarded_for_and_host(gw: GatewayUnderTest, backends) -> None:
    """A limit of 1 per X-Forwarded-For (or per Host) value counts each value on its own, not all as "-"."""
    (b,) = backends(1)
    for key, header in (("header:X-Forwarded-For", "X-Forwarded-For"), ("header:Host", "Host")):
        gw.set([simple_route(rate_limit=RateLimit(requests=1, period=60, key=key))], [b.instance()])
        async with httpx.AsyncClient(base_url=gw.url) as client:
            first = [(await client.get("/whoami", headers={header: f"10.0.0.{i}"})).status_code for i in range(4)]
            again = (await client.get("/whoami", headers={header: "10.0.0.1"})).status_code
        assert (first, again) == ([200] * 4, 429), key
        await policy.close(gw.proxy.table)


async def test_hash_on_forwarded_for_spreads_clients(gw: GatewayUnderTest, backends) -> None:
    """ring_hash on header:X-Forwarded-For keeps each forwarded client on one instance and spreads them."""
    bs = backends(3)
    route = Route.model_validate(
        {
            "name": "svc",
            "backends": [{"service": "svc"}],
            "lb": {"policy": "ring_hash", "hash_on": "header:X-Forwarded-For"},
        }
    )
    gw.set([route], [x.instance() for x in bs])
    owners: dict[int, set[str]] = {}
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for user in range(12):
            for _ in range(3):
                r = await client.get("/whoami", headers={"X-Forwarded-For": f"10.1.0.{user}"})
                owners.setdefault(user, set()).add(r.json()["name"])
    assert all(len(names) == 1 for names in owners.values()), owners
    assert len(set().union(*owners.values())) >= 2


@pytest.mark.parametrize("name", ["Connection", "upgrade", "X-Real-IP", "X-Forwarded-Proto", "Transfer-Encoding"])
def test_keys_of_headers_the_gateway_manages_are_refused(name: str) -> None:
    """A rate-limit key or hash_on naming a header the gateway drops or sets itself is refused, saying why."""
    with pytest.raises(ValidationError, match="cannot be a request key"):
        RateLimit(requests=1, key=f"header:{name}")
    with pytest.raises(ValidationError, match="cannot be a request key"):
        LoadBalancing(policy="ring_hash", hash_on=f"header:{name}")


def test_rewrite_replacement_is_checked_when_loaded() -> None:
    """A replacement naming a missing group, or a regex that only compiles as text, is refused at config time."""
    with pytest.raises(ValidationError, match="not a valid replacement"):
        Rewrite(path="/v2/\\2", path_regex="^/(.*)")
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        Rewrite(path="/b", path_regex="(?u)^/a")
    assert Rewrite(path="/v2/\\1", path_regex="^/(.*)").path == "/v2/\\1"
