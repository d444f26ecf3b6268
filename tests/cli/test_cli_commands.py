"""The `jishi` commands against a real control-plane process: status, scale, routes, kv, validate, errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jishi.api import HttpControlPlane
from jishi.cli.main import app
from jishi.registry.model import Health, Instance, Route, RouteBackend, ServiceSpec
from jishi.testing import ProcessGroup, free_port, wait_for_port

runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One control plane for the module; its URL. Stopped by PID afterwards."""
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    group = ProcessGroup(tmp / "logs")
    try:
        proc = group.python("server", "-m", "jishi.server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp))
        wait_for_port(port, timeout=15)
        assert proc.alive(), proc.log()
        yield f"http://127.0.0.1:{port}"
    finally:
        group.stop_all()


def cp_run(url: str, coro_fn):
    async def go():
        async with HttpControlPlane(url) as cp:
            return await coro_fn(cp)

    return asyncio.run(go())


def jishi(url: str, *args: str):
    return runner.invoke(app, ["--control-plane", url, *args])


@pytest.fixture(scope="module")
def shop(server: str) -> str:
    """The control plane with one service, one route and one live instance (on a lease kept by nobody)."""

    async def setup(cp: HttpControlPlane) -> None:
        await cp.put_service(ServiceSpec(name="catalog", command=["x", "{port}"], instances=2))
        await cp.put_route(Route(name="catalog", prefix="/api/catalog", backends=[RouteBackend(service="catalog")]))
        lease = await cp.grant_lease(600)
        inst = Instance(id="catalog-a1", service="catalog", port=4321, pid=999, started_at=time.time() - 75)
        await cp.register_instance(inst, lease)
        await cp.set_health("catalog", "catalog-a1", Health.PASSING, "ok")

    cp_run(server, setup)
    return server


def test_status_json_lists_every_instance(shop):
    """`status --json` lists each instance with service, id, address, port, pid and health."""
    result = jishi(shop, "status", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (inst,) = [i for i in doc["instances"] if i["id"] == "catalog-a1"]
    assert {k: inst[k] for k in ("service", "address", "port", "pid", "health")} == {
        "service": "catalog",
        "address": "127.0.0.1",
        "port": 4321,
        "pid": 999,
        "health": "passing",
    }
    assert "gateways" in doc and doc["routes"][0]["name"] == "catalog"


def test_status_table_shows_instances_and_routes(shop):
    """The human `status` shows the service, its instance with health and uptime, and the route."""
    result = jishi(shop, "status")
    assert result.exit_code == 0, result.output
    for text in ("catalog", "catalog-a1", "127.0.0.1:4321", "passing", "1m1", "/api/catalog", "none running"):
        assert text in result.stdout, text


def test_scale_changes_the_desired_count(shop):
    """`scale catalog 5` stores 5 and says what changed."""
    result = jishi(shop, "scale", "catalog", "5")
    assert result.exit_code == 0, result.output
    assert "catalog: 2 → 5 instances" in result.stdout
    spec = cp_run(shop, lambda cp: cp.get_service("catalog"))
    assert spec.instances == 5


def test_scale_unknown_service_exits_1(shop):
    """Scaling a service that does not exist fails with a one-line message and exit 1."""
    result = jishi(shop, "scale", "nope", "3")
    assert result.exit_code == 1
    assert "service 'nope' does not exist" in result.stderr


def test_scale_rejects_a_negative_count(shop):
    """A negative count is a usage error (exit 2) before anything is sent."""
    assert jishi(shop, "scale", "catalog", "--", "-1").exit_code == 2


def test_routes_json(shop):
    """`routes --json` gives each route with its backends and how many instances serve it."""
    result = jishi(shop, "routes", "--json")
    assert result.exit_code == 0, result.output
    (route,) = json.loads(result.stdout)
    assert route["prefix"] == "/api/catalog" and route["backends"][0]["service"] == "catalog"
    assert route["in_rotation"] == 1


def test_kv_put_get_del(server):
    """kv put, get (one key and a prefix), del; a missing key exits 1."""
    assert jishi(server, "kv", "put", "app/color", "blue").exit_code == 0
    assert jishi(server, "kv", "put", "app/size", "xl").exit_code == 0
    got = jishi(server, "kv", "get", "app/color")
    assert (got.exit_code, got.stdout.strip()) == (0, "blue")
    listed = jishi(server, "kv", "get", "app/", "--prefix")
    assert listed.stdout.splitlines() == ["app/color\tblue", "app/size\txl"]
    deleted = jishi(server, "kv", "del", "app/", "--prefix")
    assert (deleted.exit_code, deleted.stdout.strip()) == (0, "deleted 2 keys")
    missing = jishi(server, "kv", "get", "app/color")
    assert missing.exit_code == 1 and "no key 'app/color'" in missing.stderr


def test_kv_watch_prints_changes(server, tmp_path):
    """`kv watch KEY --prefix` prints each change under KEY as it happens."""
    argv = [sys.executable, "-m", "jishi", "--control-plane", server, "kv", "watch", "feature/", "--prefix"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as watcher:
        try:
            assert watcher.stderr is not None
            assert "watching keys under 'feature/'" in watcher.stderr.readline()
            assert jishi(server, "kv", "put", "feature/x", "on").exit_code == 0
            assert jishi(server, "kv", "del", "feature/x").exit_code == 0
            assert watcher.stdout is not None
            assert watcher.stdout.readline().strip() == "PUT feature/x on"
            assert watcher.stdout.readline().strip() == "DELETE feature/x"
        finally:
            watcher.kill()
            watcher.wait(timeout=10)


def test_unreachable_control_plane_says_how_to_start_it():
    """With nothing listening, a command fails with exit 1 and says how to start the control plane."""
    result = jishi(f"http://127.0.0.1:{free_port()}", "status")
    assert result.exit_code == 1
    assert "cannot reach the control plane" in result.stderr
    assert "jishi up" in result.stderr
    assert "Traceback" not in result.output


def test_validate_reports_line_and_exits_2(tmp_path: Path):
    """`validate` of a broken file exits 2 and names file:line and field."""
    bad = tmp_path / "jishi.yaml"
    bad.write_text("services:\n  catalog:\n    command: x {port}\n    instances: lots\n")
    result = runner.invoke(app, ["validate", "-f", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:4: services.catalog.instances: must be a whole number" in result.stderr


def test_validate_accepts_the_shop():
    """`validate` of the demo's file exits 0 and summarises it."""
    shop = Path(__file__).resolve().parents[2] / "examples" / "shop" / "jishi.yaml"
    result = runner.invoke(app, ["validate", "-f", str(shop)])
    assert result.exit_code == 0, result.output
    assert "catalog×3, orders×2, users×2" in result.stdout
