"""The control plane's /metrics and gateway reports, in-process (httpx ASGITransport)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jishi.api import HttpControlPlane
from jishi.errors import ControlPlaneError
from jishi.gateway.stats import B0, ROW_LEN, SUM
from jishi.registry import Health, Instance, Registry, ServiceSpec
from jishi.server import create_app
from jishi.store.sqlite import SqliteStore
from jishi.testing import metric_samples


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = await SqliteStore.open(tmp_path / "state.db")
    yield Registry(store)
    await store.close()


@pytest.fixture
async def cp(registry: Registry) -> AsyncIterator[tuple[HttpControlPlane, httpx.AsyncClient]]:
    app = create_app(registry)
    transport = httpx.ASGITransport(app)  # type: ignore[arg-type]
    client = HttpControlPlane("http://cp", transport=transport)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as http:
        yield client, http
    await client.aclose()


def gateway_report(ok: int, err: int, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    row: list[Any] = [0] * ROW_LEN
    row[2], row[5], row[B0 + 4], row[SUM] = ok, err, ok + err, 0.02 * (ok + err)
    return {"started_at": time.time() - 1, "workers": 1, "connections": 2, "upstream": {"idle": 3, "busy": 1},
            "rows": [["web", "web/a", row]], "policies": {}, "events": events or []}  # fmt: skip


async def test_metrics_show_store_revision_op_latency_registry_and_gateway_traffic(
    cp: tuple[HttpControlPlane, httpx.AsyncClient], registry: Registry
) -> None:
    """After some writes and a report: store revision and op latency, instances by health, restarts, up, and
    the reported gateway traffic are all at /metrics."""
    client, http = cp
    await client.put_service(ServiceSpec(name="web", command=["srv"], instances=2))
    lease = await client.grant_lease(60)
    await client.register_instance(Instance(id="a", service="web", port=9001, restarts=2), lease)
    await client.set_health("web", "a", Health.PASSING)
    await client.register_instance(Instance(id="b", service="web", port=9002), lease)
    await client.report_gateway("gw1", gateway_report(7, 3))
    reply = await http.get("/metrics")
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = metric_samples(reply.text)
    assert found[("jishi_store_revision", ())] == await registry.revision()
    assert found[("jishi_store_operation_duration_seconds_count", (("op", "put"),))] >= 2
    assert found[("jishi_store_operation_duration_seconds_count", (("op", "txn"),))] >= 1  # set_health
    assert found[("jishi_services", ())] == 1
    assert found[("jishi_instances", (("health", "passing"), ("service", "web")))] == 1
    assert found[("jishi_instances", (("health", "critical"), ("service", "web")))] == 1
    assert found[("jishi_instance_up", (("instance", "a"), ("service", "web")))] == 1
    assert found[("jishi_instance_up", (("instance", "b"), ("service", "web")))] == 0
    assert found[("jishi_instance_restarts_total", (("instance", "a"), ("service", "web")))] == 2
    labels = (("code_class", "5xx"), ("instance", "web/a"), ("route", "web"), ("service", "web"))
    assert found[("jishi_gateway_requests_total", labels)] == 3
    assert found[("jishi_gateway_request_duration_seconds_bucket", (("le", "0.025"), ("route", "web")))] == 10
    assert found[("jishi_gateway_upstream_idle_connections", ())] == 3
    key = (("code", "204"), ("method", "POST"), ("path", "/v1/gateways/{gateway_id}/report"))
    assert found[("jishi_api_requests_total", key)] == 1


async def test_report_events_are_stored_and_stats_follow_reports(
    cp: tuple[HttpControlPlane, httpx.AsyncClient], registry: Registry
) -> None:
    """Events in a report land in the event log; /v1/stats shows the reported totals."""
    client, http = cp
    event = {"time": time.time(), "kind": "instance.ejected", "subject": "web/a", "reason": "5 consecutive 5xx"}
    await client.report_gateway("gw1", gateway_report(1, 5, [event]))
    stored = await registry.events(kind="instance.ejected")
    assert [(e.subject, e.reason) for e in stored] == [("web/a", "5 consecutive 5xx")]
    stats = (await http.get("/v1/stats")).json()
    assert stats["routes"]["web"]["errors"] == 5 and stats["gateways"][0]["id"] == "gw1"


async def test_a_malformed_report_is_refused_with_a_json_error(cp: tuple[HttpControlPlane, httpx.AsyncClient]) -> None:
    """A row of the wrong length is a 400 naming the row; nothing is stored."""
    client, http = cp
    with pytest.raises(ControlPlaneError) as caught:
        await client.report_gateway("gw1", {"started_at": 1.0, "rows": [["web", "web/a", [1, 2]]]})
    assert caught.value.status == 400 and "'web'/'web/a'" in str(caught.value)
    assert (await http.get("/v1/stats")).json()["routes"] == {}
