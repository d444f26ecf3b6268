"""`jishi top`: frames rendered from a status and a /v1/stats document, and `top --once` against a control plane."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from jishi.api import HttpControlPlane
from jishi.cli.main import app
from jishi.cli.top import Frame, fetch_frame, top_view
from jishi.registry import ClusterStatus, Registry
from jishi.registry.model import GatewayInfo, Health, Instance, Route, RouteBackend, ServiceSpec
from jishi.server import create_app
from jishi.store.sqlite import SqliteStore
from jishi.testing import FakeClock, ProcessGroup, free_port, wait_for_port

NOW = 1_000_000.0
runner = CliRunner()


def row(rps: float, error_ratio: float, p50: float | None, p99: float | None, requests: int, errors: int) -> dict:
    status = {"2xx": requests - errors, "3xx": 0, "4xx": 0, "5xx": errors}
    return {"requests": requests, "errors": errors, "rps": rps, "error_ratio": error_ratio, "p50_ms": p50,
            "p99_ms": p99, "status": status}  # fmt: skip


def cluster() -> ClusterStatus:
    def inst(n: int, health: Health, draining: bool = False) -> Instance:
        return Instance(id=f"api-{n}", service="api", port=9000 + n, pid=100 + n, health=health, draining=draining,
                        started_at=NOW - 125, restarts=n)  # fmt: skip

    return ClusterStatus(
        revision=3,
        services=[ServiceSpec(name="api", command=["x"], instances=3), ServiceSpec(name="idle", command=["x"])],
        instances=[inst(0, Health.PASSING), inst(1, Health.CRITICAL), inst(2, Health.PASSING, draining=True)],
        routes=[Route(name="api", prefix="/api", backends=[RouteBackend(service="api")])],
        gateways=[GatewayInfo(id="gw", url="http://127.0.0.1:8080", pid=5, started_at=NOW - 10)],
        agents=[],
    )


STATS: dict[str, Any] = {
    "time": NOW,
    "window": 10.0,
    "gateways": [{"id": "gw", "reported_at": NOW, "connections": 2, "workers": 1}],
    "routes": {"api": row(42.5, 0.12, 1.5, 87.0, 900, 108)},
    "services": {"api": row(42.5, 0.12, 1.5, 87.0, 900, 108)},
    "instances": {"api/api-0": row(40.0, 0.005, 1.25, 12.345, 850, 4)},
    "policies": {"api": {"breaker": "half_open", "rate_limited": 5, "shed": 2, "retries": 9, "ejected": []}},
}


def render(frame: Frame) -> str:
    console = Console(width=200, record=True)
    console.print(top_view(frame, NOW, url="http://cp"))
    return console.export_text()


def lines_with(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


def test_frame_shows_rates_errors_and_latencies_per_service_instance_and_route():
    """Each row carries rps, error %, p50 and p99 from /v1/stats; totals and policy counters are shown."""
    text = render(Frame(cluster(), STATS))
    assert "1/3" in lines_with(text, "api ")[0]  # one of three in rotation
    (service,) = [line for line in lines_with(text, "42.5") if "900" in line]
    assert "12.0%" in service and "1.5" in service and "87" in service and "108" in service
    (instance,) = lines_with(text, "api-0 ")
    assert "40.0" in instance and "0.5%" in instance and "1.2" in instance and " 12 " in instance
    assert "2m05s" in instance and "passing" in instance
    assert "draining" in lines_with(text, "api-2 ")[0] and "critical" in lines_with(text, "api-1 ")[0]
    (route,) = lines_with(text, "half_open")
    assert "7" in route.split("half_open")[1] and "9" in route.split("half_open")[1]  # 5 limited + 2 shed; 9 retries
    assert "42.5 req/s over the last 10 s" in text
    assert "0/1" in lines_with(text, "idle")[0]  # declared, none running


def test_frame_without_stats_says_why_and_still_lists_instances():
    """With no /v1/stats the rate columns are "–", a line says why, and every instance is still listed."""
    text = render(Frame(cluster(), None, "this control plane has no /v1/stats (no traffic metrics)"))
    assert "traffic metrics not available: this control plane has no /v1/stats" in text
    assert len(lines_with(text, "127.0.0.1:900")) == 3
    assert "–" in lines_with(text, "api-0 ")[0]
    assert "req/s" not in lines_with(text, "jishi top")[0]


async def test_fetch_frame_reads_status_and_stats_from_the_api(tmp_path: Path) -> None:
    """fetch_frame reads /v1/status and /v1/stats of a real API app (in-process) into one Frame."""
    store = await SqliteStore.open(tmp_path / "state.db", clock=FakeClock())
    try:
        application = create_app(Registry(store, wall=FakeClock(5000.0)))
        transport = httpx.ASGITransport(application)  # type: ignore[arg-type]
        async with HttpControlPlane("http://cp", transport=transport) as cp:
            await cp.put_service(ServiceSpec(name="web", command=["x"], instances=2))
        async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
            frame = await fetch_frame(client)
    finally:
        await store.close()
    assert [s.name for s in frame.status.services] == ["web"]
    assert frame.stats is not None and frame.stats_problem is None
    assert {"routes", "services", "instances", "policies"} <= set(frame.stats)


async def test_fetch_frame_notes_a_missing_stats_endpoint() -> None:
    """A 404 from /v1/stats (an older control plane) gives a frame with the reason instead of an error."""
    status = cluster().model_dump(mode="json")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/status":
            return httpx.Response(200, json=status)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "GET /v1/stats: Not Found"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://cp") as client:
        frame = await fetch_frame(client)
    assert frame.stats is None and frame.stats_problem is not None and "no /v1/stats" in frame.stats_problem
    assert len(frame.status.instances) == 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One control plane process with a service and a live instance; its URL. Stopped by PID afterwards."""
    tmp = tmp_path_factory.mktemp("top-server")
    port = free_port()
    group = ProcessGroup(tmp / "logs")
    try:
        proc = group.python("server", "-m", "jishi.server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp))
        wait_for_port(port, timeout=15)
        assert proc.alive(), proc.log()
        url = f"http://127.0.0.1:{port}"

        async def setup() -> None:
            async with HttpControlPlane(url) as cp:
                await cp.put_service(ServiceSpec(name="catalog", command=["x"], instances=1))
                lease = await cp.grant_lease(600)
                inst = Instance(id="catalog-a1", service="catalog", port=4321, pid=999, health=Health.PASSING,
                                started_at=time.time() - 75)  # fmt: skip
                await cp.register_instance(inst, lease)

        asyncio.run(setup())
        yield url
    finally:
        group.stop_all()


def test_top_once_prints_one_frame(server: str) -> None:
    """`jishi top --once` prints the services and instances of a running control plane and exits 0."""
    result = runner.invoke(app, ["--control-plane", server, "top", "--once"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "jishi top" in result.output and "catalog-a1" in result.output
    assert "127.0.0.1:4321" in result.output and "passing" in result.output


def test_top_once_without_a_control_plane_fails_with_a_message() -> None:
    """With nothing listening, `jishi top --once` exits 1 and names the URL it could not read."""
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["--control-plane", url, "top", "--once"])
    assert result.exit_code == 1
    assert f"cannot read the control plane at {url}" in result.output


def test_top_redraws_until_interrupted(server: str) -> None:
    """Without --once, `jishi top` draws a new frame every interval (one after another when piped); Ctrl-C ends it."""
    argv = [sys.executable, "-m", "jishi", "--control-plane", server, "top", "--interval", "0.2"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell may ignore SIGINT
    )
    try:
        time.sleep(3.0)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert output.count("jishi top") >= 3 and "catalog-a1" in output
