"""A real control plane and a gateway with 2 workers: the parent's /metrics is the workers' sum, and the
control plane's /v1/stats and /metrics carry the same counts from the gateway's reports."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import simple_route
from test_stats import backend_port, check_known_traffic, send_known_traffic

from jishi.api import HttpControlPlane
from jishi.registry import Health, Instance
from jishi.testing import ProcessGroup, free_port, metric_samples

__all__ = ["backend_port"]


async def eventually(check: Callable[[], Awaitable[Any]], limit: float = 60.0) -> Any:
    """Await `check()` until it returns a truthy value without raising; its last error after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        try:
            value = await check()
            if value:
                return value
        except (AssertionError, KeyError, httpx.HTTPError, OSError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {limit} s")
        await asyncio.sleep(0.1)


async def port_open(port: int) -> bool:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    return True


@pytest.mark.timeout(300)
async def test_two_workers_are_summed_at_metrics_and_reported_to_stats(
    procs: ProcessGroup, tmp_path: Path, backend_port: int
) -> None:
    """Known traffic over 2 workers: admin /metrics sums both, /v1/stats rows and server /metrics match it."""
    cp_port, gw_port, admin_port = free_port(), free_port(), free_port()
    procs.python("server", "-m", "jishi.server", "--listen", f"127.0.0.1:{cp_port}",
                 "--data-dir", str(tmp_path / "server"))  # fmt: skip
    await eventually(lambda: port_open(cp_port))
    cp_url = f"http://127.0.0.1:{cp_port}"
    async with HttpControlPlane(cp_url) as cp:
        await cp.put_route(simple_route("svc", "/api", strip_prefix=True))
        lease = await cp.grant_lease(300)
        await cp.register_instance(Instance(id="a", service="svc", port=backend_port), lease)
        await cp.set_health("svc", "a", Health.PASSING)
    gw = procs.python("gateway", "-m", "jishi.gateway", "--control-plane", cp_url, "--listen",
                      f"127.0.0.1:{gw_port}", "--state-dir", str(tmp_path / "gw"), "--workers", "2",
                      "--admin-listen", f"127.0.0.1:{admin_port}")  # fmt: skip

    async def both_workers_synced() -> bool:
        return gw.log().count("following the control plane from revision") == 2

    await eventually(both_workers_synced, limit=120)
    await send_known_traffic(f"http://127.0.0.1:{gw_port}", prefix="/api")

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as admin:

        async def summed() -> dict[Any, float]:
            found = metric_samples((await admin.get("/metrics")).text)
            check_known_traffic(found, "svc/a")
            assert found[("jishi_gateway_workers", ())] == 2
            return found

        await eventually(summed)
    files = sorted((tmp_path / "gw" / "metrics").glob("worker-*.json"))
    assert len(files) == 2
    per_worker = [sum(sum(row[2][:10]) for row in json.loads(f.read_text())["rows"] if row[0] == "svc") for f in files]
    assert sum(per_worker) == 10

    async with httpx.AsyncClient(base_url=cp_url) as client:

        async def reported() -> dict[str, Any]:
            stats = (await client.get("/v1/stats")).json()
            row = stats["routes"]["svc"]
            assert (row["requests"], row["errors"]) == (10, 3)
            assert row["status"] == {"2xx": 7, "3xx": 0, "4xx": 0, "5xx": 3}
            assert stats["instances"]["svc/a"]["requests"] == 10
            assert stats["services"]["svc"]["errors"] == 3
            return stats

        stats = await eventually(reported)
        assert [g["workers"] for g in stats["gateways"]] == [2]
        assert stats["window"] == 10.0
        text = (await client.get("/metrics")).text
    found = metric_samples(text)
    check_known_traffic(found, "svc/a")
    assert found[("jishi_store_revision", ())] >= 4
    assert found[("jishi_store_operation_duration_seconds_count", (("op", "put"),))] >= 1
    assert found[("jishi_instance_up", (("instance", "a"), ("service", "svc")))] == 1
    assert found[("jishi_instance_restarts_total", (("instance", "a"), ("service", "svc")))] == 0
    assert found[("jishi_api_requests_total", (("code", "200"), ("method", "GET"), ("path", "/v1/stats")))] >= 1
