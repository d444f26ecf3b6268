"""The /metrics + /healthz listener the gateway and agent share: answers, refusals and a failing render."""

from __future__ import annotations

import httpx
import pytest

from jishi.metrics_listener import CONTENT_TYPE, MetricsListener


async def test_metrics_healthz_and_refusals() -> None:
    """GET /metrics gives render()'s bytes as Prometheus text; /healthz ok; POST 405 and other paths 404, as JSON;
    a render that raises is logged and the connection closed, and the listener keeps answering."""
    calls = []

    def render() -> bytes:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return b"jishi_up 1\n"

    listener = MetricsListener(render, "test metrics")
    port = await listener.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            metrics = await client.get("/metrics?x=1")
            assert metrics.status_code == 200 and metrics.text == "jishi_up 1\n"
            assert metrics.headers["content-type"] == CONTENT_TYPE
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            posted = await client.post("/metrics")
            assert posted.status_code == 405 and posted.json()["error"]["code"] == "method_not_allowed"
            assert (await client.get("/other")).json()["error"]["code"] == "not_found"
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/metrics")  # the failing render: no answer, the connection is closed
            assert (await client.get("/metrics")).status_code == 200
    finally:
        await listener.stop()
