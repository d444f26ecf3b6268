"""Failures while the shop serves: an instance killed under load, the control plane gone, Ctrl-C."""

from __future__ import annotations

import os
import signal
import time

import pytest
from shop_harness import Load, ShopRun, alive

pytestmark = pytest.mark.slow


def test_kill_9_of_a_catalog_instance_under_load_fails_no_request(shop: ShopRun):
    """kill -9 of one catalog instance at ~200 req/s: 0 failures, out of rotation ≤ 1 s, back by itself."""
    with Load(shop.gateway_port, "/api/catalog/whoami") as load:
        time.sleep(1.0)
        victim = shop.in_rotation("catalog")[0]
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        while any(i["pid"] == victim["pid"] for i in shop.in_rotation("catalog")):
            assert time.monotonic() - killed_at < 1.0, "the killed instance stayed in rotation for over 1 s"
            time.sleep(0.02)
        out_after = time.monotonic() - killed_at

        deadline = time.monotonic() + 15
        while True:
            catalog = shop.in_rotation("catalog")
            pids = {i["pid"] for i in catalog}
            if len(catalog) == 3 and victim["pid"] not in pids:
                break
            assert time.monotonic() < deadline, f"not back to 3 catalog instances: {catalog}"
            time.sleep(0.05)
        back_after = time.monotonic() - killed_at
        replacement = next((i for i in catalog if i["id"] == victim["id"]), None)
        served_before = load.by_instance[victim["id"]]
        time.sleep(1.5)  # the restarted instance takes traffic again
    assert load.failures == [], load.failures[:10]
    assert load.rate > 160, f"only {load.rate:.0f} req/s"
    assert replacement is not None, f"slot {victim['id']} was not restarted under the same id: {catalog}"
    assert replacement["restarts"] >= 1
    assert load.by_instance[victim["id"]] > served_before  # the restarted instance serves again
    print(f"out of rotation after {out_after * 1000:.0f} ms, back after {back_after:.1f} s, {load.rate:.0f} req/s")


def test_gateway_keeps_routing_with_the_control_plane_down(shop: ShopRun):
    """With the server SIGKILLed (and `up` paused so it is not restarted), the gateway keeps serving."""
    pids = shop.platform_pids()
    assert shop.up is not None
    os.kill(shop.up.pid, signal.SIGSTOP)  # pause the supervisor so the server stays down
    try:
        os.kill(pids["server"], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(pids["server"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        with Load(shop.gateway_port, "/api/catalog/whoami", rate=100) as load:
            time.sleep(5.0)  # longer than the instances' lease TTL (3 s)
        assert load.failures == [], load.failures[:10]
        assert len(load.by_instance) == 3, load.by_instance
        assert shop.get("/api/users/users/1").json()["name"]
    finally:
        os.kill(shop.up.pid, signal.SIGCONT)
    shop.wait_in_rotation({"catalog": 3, "orders": 2, "users": 2}, timeout=20)  # the server came back
    assert shop.platform_pids()["server"] != pids["server"]
    assert "the server" in shop.up.log() and "restarting it in" in shop.up.log()  # and `up` said so


def test_sigterm_stops_everything_in_order_and_exits_0(shop: ShopRun):
    """SIGTERM to `jishi up` stops agent, gateway and server; exit 0 and no process left behind."""
    shop.status()
    code = shop.stop()
    assert code == 0
    log = shop.up.log() if shop.up else ""
    assert log.index("stopped the agent") < log.index("stopped the gateway") < log.index("stopped the server")
