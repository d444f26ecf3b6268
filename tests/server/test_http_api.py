"""The /v1/ API in-process (httpx ASGITransport): every ControlPlane method round-trips; errors are JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jishi.api import HttpControlPlane, wire
from jishi.errors import (
    CompactedError,
    ControlPlaneError,
    ControlPlaneUnavailable,
    LeaseNotFoundError,
    NotFoundError,
    StoreError,
)
from jishi.registry import AgentInfo, GatewayInfo, Health, Instance, Registry, Route, RouteBackend, ServiceSpec
from jishi.server import create_app
from jishi.store import Put
from jishi.store.sqlite import SqliteStore
from jishi.testing import FakeClock, free_port


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "state.db", clock=FakeClock(), synchronous="NORMAL")
    yield store
    await store.close()


@pytest.fixture
def app(store: SqliteStore) -> object:
    return create_app(Registry(store, wall=FakeClock(5000.0)))


@pytest.fixture
async def http(app: object) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://cp") as client:  # type: ignore[arg-type]
        yield client


@pytest.fixture
async def cp(app: object) -> AsyncIterator[HttpControlPlane]:
    client = HttpControlPlane("http://cp", transport=httpx.ASGITransport(app))  # type: ignore[arg-type]
    yield client
    await client.aclose()


SPEC = ServiceSpec(name="web", command=["srv", "--port", "{port}"], instances=2)
ROUTE = Route(name="web", prefix="/api/web", strip_prefix=True, backends=[RouteBackend(service="web")])


async def test_services_and_routes_round_trip(cp: HttpControlPlane) -> None:
    """put/get/list/scale/delete of services and routes give back the same records."""
    await cp.put_service(SPEC)
    await cp.put_route(ROUTE)
    assert await cp.get_service("web") == SPEC
    assert await cp.list_services() == [SPEC]
    assert await cp.list_routes() == [ROUTE]
    assert (await cp.scale("web", 4)).instances == 4
    await cp.delete_route("web")
    await cp.delete_service("web")
    assert await cp.list_services() == [] and await cp.list_routes() == []


async def test_instances_leases_and_health_round_trip(cp: HttpControlPlane) -> None:
    """An instance registered under a lease can be health-updated, drained, listed and deregistered."""
    lease = await cp.grant_lease(10.0)
    assert await cp.keepalive(lease) == 10.0
    inst = Instance(id="web-1", service="web", port=9001, pid=42)
    await cp.register_instance(inst, lease)
    updated = await cp.set_health("web", "web-1", Health.PASSING, "200 OK")
    assert updated.health is Health.PASSING and updated.health_output == "200 OK"
    assert (await cp.set_draining("web", "web-1")).draining
    assert [i.id for i in await cp.list_instances("web")] == ["web-1"]
    assert await cp.list_instances("other") == []
    await cp.deregister_instance("web", "web-1")
    assert await cp.list_instances() == []
    await cp.revoke_lease(lease)
    with pytest.raises(LeaseNotFoundError) as info:
        await cp.keepalive(lease)
    assert info.value.lease_id == lease


async def test_apply_members_kv_and_status(cp: HttpControlPlane) -> None:
    """apply returns a revision; gateways, agents, KV and /v1/status reflect what was written."""
    rev = await cp.apply([SPEC], [ROUTE])
    assert rev == await cp.revision()
    lease = await cp.grant_lease(10.0)
    await cp.register_gateway(GatewayInfo(id="gw", url="http://127.0.0.1:8080", pid=1, started_at=1.0), lease)
    await cp.register_agent(AgentInfo(id="ag", host="h", pid=2, started_at=1.0), lease)
    assert [g.id for g in await cp.list_gateways()] == ["gw"]
    assert [a.id for a in await cp.list_agents()] == ["ag"]
    await cp.kv_put("app/colour", "blue")
    await cp.kv_put("app/size", "大")
    kvs = await cp.kv_get("app/", prefix=True)
    assert [(kv.key, kv.value.decode()) for kv in kvs] == [(b"app/colour", "blue"), (b"app/size", "大")]
    assert await cp.kv_delete("app/colour") == 1 and await cp.kv_get("app/colour") == []
    status = await cp.status()
    assert [s.name for s in status.services] == ["web"] and [g.id for g in status.gateways] == ["gw"]
    revision, snapshot = await cp.snapshot("/jishi/routes/")
    assert revision == status.revision and [kv.key for kv in snapshot] == [b"/jishi/routes/web"]


async def test_missing_records_are_404_with_json_code(http: httpx.AsyncClient, cp: HttpControlPlane) -> None:
    """Unknown services, instances and paths answer 404 with {"error": {"code", "message"}}."""
    for method, path in [("GET", "/v1/services/nope"), ("DELETE", "/v1/instances/web/x"), ("GET", "/v2/what")]:
        response = await http.request(method, path)
        assert response.status_code == 404, path
        error = response.json()["error"]
        assert error["code"] == "not_found" and error["message"], path
    with pytest.raises(NotFoundError, match="service 'nope' does not exist"):
        await cp.get_service("nope")


async def test_invalid_bodies_are_400_with_a_field_path(http: httpx.AsyncClient, cp: HttpControlPlane) -> None:
    """A body that fails validation answers 400 invalid_request naming the field; the client raises it."""
    response = await http.put("/v1/services/web", json={"name": "web", "command": [], "instances": 1})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "command" in error["message"]
    mismatch = await http.put("/v1/services/other", json=SPEC.model_dump(mode="json"))
    assert mismatch.status_code == 400 and "differs" in mismatch.json()["error"]["message"]
    await cp.put_service(SPEC)
    with pytest.raises(ControlPlaneError) as info:
        await cp.scale("web", -1)
    assert (info.value.status, info.value.code) == (400, "invalid_request")


async def test_lease_errors_carry_the_lease_id(http: httpx.AsyncClient) -> None:
    """Registering under an unknown lease answers 404 lease_not_found with the lease id."""
    body = {"instance": Instance(id="a", service="web", port=1).model_dump(mode="json"), "lease": 777}
    response = await http.put("/v1/instances/web/a", json=body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "lease_not_found" and response.json()["error"]["lease_id"] == 777


async def test_store_errors_map_to_400_409_or_503_by_whether_retrying_can_help(tmp_path: Path) -> None:
    """A txn writing a key twice and a bad TTL are 400 invalid_request, a taken lease id 409, a closed store 503."""
    store = await SqliteStore.open(tmp_path / "other.db", synchronous="NORMAL")
    caught: list[BaseException] = []
    calls = [
        lambda: store.txn([], [Put(b"/a", b"1"), Put(b"/a", b"2")]),
        lambda: store.grant(0),
        lambda: store.grant(5, lease_id=1),
    ]
    await store.grant(5, lease_id=1)
    for call in calls:
        with pytest.raises(StoreError) as info:
            await call()
        caught.append(info.value)
    await store.close()
    with pytest.raises(StoreError) as closed:
        await store.put(b"/a", b"1")
    caught.append(closed.value)
    replies = [wire.error_reply(exc) for exc in caught]
    assert [(status, body["error"]["code"]) for status, body in replies] == [
        (400, "invalid_request"),
        (400, "invalid_request"),
        (409, "lease_exists"),
        (503, "store_error"),
    ]
    assert "twice" in replies[0][1]["error"]["message"] and "closed" in replies[3][1]["error"]["message"]


class RacingStore(SqliteStore):
    """A store where another client's write lands right after every `revision()` read, as it can on a network."""

    async def revision(self) -> int:
        current = await super().revision()
        await self.put(b"/jishi/kv/k", b"written meanwhile")
        return current


async def test_kv_read_reports_the_revision_of_its_values(tmp_path: Path) -> None:
    """GET /v1/kv answers the revision its values were read at, even when writes land around the request."""
    store = await RacingStore.open(tmp_path / "racing.db", synchronous="NORMAL")
    try:
        await store.put(b"/jishi/kv/k", b"first")
        transport = httpx.ASGITransport(create_app(Registry(store)))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
            reply = (await client.get("/v1/kv/k")).json()
        (kv,) = reply["kvs"]
        assert kv["mod_revision"] <= reply["revision"]  # else a watch from revision + 1 repeats this value
    finally:
        await store.close()


async def test_watch_from_a_compacted_revision_is_410(store: SqliteStore, cp: HttpControlPlane) -> None:
    """A watch below the compaction point answers 410 compacted, and the client raises CompactedError."""
    for i in range(3):
        await cp.kv_put(f"k{i}", "v")
    await store.compact(3)
    with pytest.raises(CompactedError) as info:
        await anext(cp.watch("/jishi/kv/", 2))  # type: ignore[arg-type]
    assert (info.value.requested, info.value.compact_revision) == (2, 3)


async def test_openapi_lists_every_path_with_tags(http: httpx.AsyncClient) -> None:
    """/openapi.json documents the /v1/ paths, each operation with a tag and a summary."""
    spec = (await http.get("/openapi.json")).json()
    for path in [
        "/v1/status",
        "/v1/services/{name}",
        "/v1/instances/{service}/{instance_id}/health",
        "/v1/leases",
        "/v1/watch",
        "/v1/apply",
        "/v1/kv/{key}",
        "/v1/snapshot",
        "/v1/health",
    ]:
        assert path in spec["paths"], path
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            assert op.get("tags") and op.get("summary"), f"{method} {path}"


async def test_unreachable_server_raises_unavailable() -> None:
    """A client pointed at a closed port raises ControlPlaneUnavailable naming the URL."""
    url = f"http://127.0.0.1:{free_port()}"
    async with HttpControlPlane(url, timeout=1.0) as cp:
        with pytest.raises(ControlPlaneUnavailable, match=url):
            await cp.list_services()


async def test_a_server_that_is_not_a_control_plane_gets_a_clear_error() -> None:
    """A 200 whose body is not JSON (another service at that address) is a ControlPlaneError naming the address
    and what came back, not a crash on the caller's indexing."""

    async def plain(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"hello"})  # type: ignore[operator]

    client = HttpControlPlane("http://elsewhere", transport=httpx.ASGITransport(plain))  # type: ignore[arg-type]
    try:
        with pytest.raises(
            ControlPlaneError, match=r"http://elsewhere answered POST /v1/leases with 200.*'hello'"
        ) as info:
            await client.grant_lease(10)
        assert info.value.code == "not_a_control_plane"
    finally:
        await client.aclose()
