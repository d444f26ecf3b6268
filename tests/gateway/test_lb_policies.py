"""Load-balancing policies through the gateway: consistent hashing by header and cookie, in-flight accounting,
state kept across table rebuilds."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from gateway_harness import GatewayUnderTest
from lb_harness import instance, start_faulty

from jishi.registry.model import Route
from jishi.testing import ProcessGroup


def route(**sections: Any) -> Route:
    return Route.model_validate({"name": "svc", "backends": [{"service": "svc"}], **sections})


async def test_ring_hash_on_a_header_sends_each_key_to_one_instance(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """hash_on header:X-User: every request of one user reaches the same instance; users spread over several."""
    bs = [start_faulty(procs, f"b{i}") for i in range(3)]
    for policy in ("ring_hash", "maglev"):
        gateway.set([route(lb={"policy": policy, "hash_on": "header:X-User"})], [instance(b) for b in bs])
        owners: dict[str, set[str]] = {}
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            for user in range(12):
                for _ in range(4):
                    r = await client.get("/whoami", headers={"X-User": f"user-{user}"})
                    owners.setdefault(f"user-{user}", set()).add(r.json()["name"])
        assert all(len(names) == 1 for names in owners.values()), owners
        assert len(set().union(*owners.values())) >= 2


async def test_hash_on_a_cookie_keeps_a_session_on_one_instance(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """hash_on cookie:session: one session cookie, one instance, among other cookies in the header."""
    bs = [start_faulty(procs, f"b{i}") for i in range(3)]
    gateway.set([route(lb={"policy": "ring_hash", "hash_on": "cookie:session"})], [instance(b) for b in bs])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for session in ("s1", "s2", "s3"):
            names = {
                (await client.get("/whoami", headers={"Cookie": f"theme=dark{i}; session={session}"})).json()["name"]
                for i in range(5)
            }
            assert len(names) == 1


async def test_least_request_counts_tries_in_flight_and_releases_them(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """While a slow request is in flight its instance counts 1 and gets no new request; after it, 0 everywhere."""
    slow, fast = start_faulty(procs, "slow"), start_faulty(procs, "fast")
    gateway.set([route(lb={"policy": "least_request"})], [instance(slow), instance(fast)])
    group = gateway.proxy.table.routes["svc"].lb
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        pending = [asyncio.ensure_future(client.get("/sleep?s=0.6")) for _ in range(2)]
        await asyncio.sleep(0.3)
        assert sorted(p.endpoint.active for p in group.peers) == [1, 1]
        names = Counter([(await client.get("/whoami")).json()["name"] for _ in range(6)])
        assert sum(names.values()) == 6
        await asyncio.gather(*pending)
    assert [p.endpoint.active for p in group.peers] == [0, 0]


async def test_state_survives_a_table_rebuild_with_the_same_peers(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """A rebuild (the registry changed elsewhere) keeps the route's peer group object, rings and marks included;
    a new instance joins the same group's peers without replacing the others."""
    bs = [start_faulty(procs, f"b{i}") for i in range(3)]
    r = route(lb={"policy": "maglev", "hash_on": "path"})
    gateway.set([r], [instance(b) for b in bs[:2]])
    group = gateway.proxy.table.routes["svc"].lb
    gateway.set([r], [instance(b) for b in bs[:2]])
    assert gateway.proxy.table.routes["svc"].lb is group
    gateway.set([r], [instance(b) for b in bs])
    bigger = gateway.proxy.table.routes["svc"].lb
    assert bigger is not group and bigger.peers[:2] == group.peers
