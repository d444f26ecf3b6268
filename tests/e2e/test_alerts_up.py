"""`jishi up` on the shop demo: the control plane runs alerting on the stored settings and keeps the event log."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from shop_harness import ShopRun

pytestmark = pytest.mark.slow


def test_up_stores_alerting_and_the_log_tells_what_happened(shop: ShopRun) -> None:
    """After `jishi up`: the alerting settings are stored (built-in rules on), nothing fires while everything is
    healthy, and `jishi events` lists the applied config and every instance start; scaling is an event too."""
    config = httpx.get(f"{shop.control_plane}/v1/alerting", timeout=5).json()["config"]
    assert config is not None and config["builtin_rules"] is True
    alerts = httpx.get(f"{shop.control_plane}/v1/alerts", timeout=5).json()
    assert [a for a in alerts["alerts"] if a["state"] == "firing"] == []
    code, out, _ = shop.jishi("events", "--json", "-n", "200")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "config.applied" and "catalog" in events[0]["labels"]["added_services"]
    started = {e["subject"].split("/")[0] for e in events if e["kind"] == "instance.started"}
    assert started == {"catalog", "orders", "users"}
    code, _, _ = shop.jishi("scale", "users", "3")
    assert code == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        code, out, _ = shop.jishi("events", "--kind", "service.scaled")
        if "scaled from 2 to 3 instances" in out:
            break
        time.sleep(0.2)
    assert "users" in out and "scaled from 2 to 3 instances" in out
    shop.wait_in_rotation({"catalog": 3, "orders": 2, "users": 3}, timeout=30)
