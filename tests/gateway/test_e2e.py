"""The gateway process against a real control-plane server process: follow, register, survive its loss."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from gateway_harness import simple_route, start_backend

from jishi.api import HttpControlPlane
from jishi.registry import Health, Instance
from jishi.testing import ProcessGroup, free_port, wait_for_port


async def eventually(check, limit: float = 10.0):
    """Await `check()` until it returns a truthy value; AssertionError after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        try:
            value = await check()
            if value:
                return value
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {limit} s")
        await asyncio.sleep(0.05)


async def test_gateway_follows_server_and_keeps_routing_when_it_stops(procs: ProcessGroup, tmp_path: Path) -> None:
    """Routes and instances put through the API route traffic; the gateway registers; stopping the server
    leaves routing to live instances intact."""
    b0, b1 = start_backend(procs, "b0"), start_backend(procs, "b1")
    cp_port, gw_port = free_port(), free_port()
    server = procs.python("server", "-m", "jishi.server", "--listen", f"127.0.0.1:{cp_port}",
                          "--data-dir", str(tmp_path / "server"))  # fmt: skip
    wait_for_port(cp_port, timeout=20)
    cp_url = f"http://127.0.0.1:{cp_port}"
    procs.python("gateway", "-m", "jishi.gateway", "--control-plane", cp_url, "--listen", f"127.0.0.1:{gw_port}",
                 "--state-dir", str(tmp_path / "gw"))  # fmt: skip
    wait_for_port(gw_port)
    gw = f"http://127.0.0.1:{gw_port}"
    async with HttpControlPlane(cp_url) as cp, httpx.AsyncClient(base_url=gw) as client:
        await cp.put_route(simple_route("svc", "/api/svc", strip_prefix=True))
        lease = await cp.grant_lease(60)
        for b in (b0, b1):
            await cp.register_instance(Instance(id=b.name, service="svc", port=b.port), lease)
            await cp.set_health("svc", b.name, Health.PASSING)

        async def both_serving() -> bool:
            names = {(await client.get("/api/svc/whoami")).json()["name"] for _ in range(4)}
            return names == {"b0", "b1"}

        await eventually(both_serving)
        gateways = await eventually(cp.list_gateways)
        assert gateways[0].url == gw

        await cp.set_health("svc", "b1", Health.CRITICAL)

        async def only_b0() -> bool:
            return {(await client.get("/api/svc/whoami")).json()["name"] for _ in range(4)} == {"b0"}

        await eventually(only_b0, 2.0)
        await eventually(lambda: asyncio.to_thread((tmp_path / "gw" / "snapshot.json").exists))

        server.stop()
        statuses = [(await client.get("/api/svc/whoami")).status_code for _ in range(20)]
        assert statuses == [200] * 20


def test_two_workers_share_the_port_and_stop_on_sigterm(procs: ProcessGroup, tmp_path: Path) -> None:
    """--workers 2 starts two processes on one port (SO_REUSEPORT) that both serve; SIGTERM stops all."""
    from jishi.gateway.snapshot import SnapshotFile
    from jishi.gateway.view import RegistryView

    backend = start_backend(procs, "b0")
    view = RegistryView()
    view.routes["/jishi/routes/svc"] = simple_route("svc")
    inst = backend.instance("svc")
    view.instances[inst.key] = inst
    SnapshotFile(tmp_path / "gw" / "snapshot.json").save(view.dump())
    port = free_port()
    dead_cp = f"http://127.0.0.1:{free_port()}"
    gw = procs.python("gateway", "-m", "jishi.gateway", "--control-plane", dead_cp, "--listen", f"127.0.0.1:{port}",
                      "--state-dir", str(tmp_path / "gw"), "--workers", "2")  # fmt: skip
    wait_for_port(port)
    deadline = time.monotonic() + 10
    while "pids" not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(20):
        with httpx.Client() as client:  # a new connection each time, so the kernel spreads them over workers
            assert client.get(f"http://127.0.0.1:{port}/whoami").status_code == 200
    pids = {line.split("[")[1].split("]")[0] for line in gw.log().splitlines() if "listening on" in line}
    assert len(pids) == 2, gw.log()
    gw.signal(15)
    assert gw.popen.wait(15) == 0


async def test_sigterm_lets_a_request_in_progress_finish(procs: ProcessGroup, tmp_path: Path) -> None:
    """On SIGTERM the gateway stops accepting but completes the request in flight, then exits 0."""
    from jishi.gateway.snapshot import SnapshotFile
    from jishi.gateway.view import RegistryView

    backend = start_backend(procs, "b0")
    view = RegistryView()
    view.routes["/jishi/routes/svc"] = simple_route("svc")
    inst = backend.instance("svc")
    view.instances[inst.key] = inst
    SnapshotFile(tmp_path / "gw" / "snapshot.json").save(view.dump())
    port = free_port()
    dead_cp = f"http://127.0.0.1:{free_port()}"
    gw = procs.python("gateway", "-m", "jishi.gateway", "--control-plane", dead_cp, "--listen", f"127.0.0.1:{port}",
                      "--state-dir", str(tmp_path / "gw"))  # fmt: skip
    wait_for_port(port)
    async with httpx.AsyncClient() as client:
        pending = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/sleep?s=0.8"))
        await asyncio.sleep(0.3)
        gw.signal(15)
        response = await pending
    assert response.status_code == 200
    assert await asyncio.to_thread(gw.popen.wait, 10) == 0
