"""Alerting in the control plane: settings and silences over HTTP, the AlertService on a Registry, the stats source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jishi.alerting import BUILTIN_RULES, AlertEvaluator, AlertingConfig, AlertState, StatsSource, stats_series
from jishi.api import HttpControlPlane
from jishi.core.alerts import labelset
from jishi.errors import NotFoundError
from jishi.registry import Health, Instance, Registry, ServiceSpec
from jishi.server import create_app
from jishi.server.alerts import AlertService
from jishi.store.sqlite import SqliteStore
from jishi.testing import FakeClock


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = await SqliteStore.open(tmp_path / "state.db", clock=FakeClock(), synchronous="NORMAL")
    yield Registry(store)
    await store.close()


@pytest.fixture
def app(registry: Registry) -> Any:
    return create_app(registry)


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://cp") as client:
        yield client


@pytest.fixture
async def cp(app: Any) -> AsyncIterator[HttpControlPlane]:
    client = HttpControlPlane("http://cp", transport=httpx.ASGITransport(app))
    yield client
    await client.aclose()


QUICK = {
    "interval": 0.05,
    "group_wait": 0,
    "builtin_rules": False,
    "log": False,
    "rules": [
        {
            "name": "WebDown",
            "expr": 'healthy_instances{service="web"}',
            "op": "<",
            "threshold": 1,
            "for": "0.1s",
            "severity": "critical",
            "message": "web has {value} healthy instances",
        }
    ],
}


async def test_alerting_settings_round_trip_and_only_real_changes_write(cp: HttpControlPlane) -> None:
    """PUT /v1/alerting stores the settings (changed: true once), GET gives them back; none stored → null."""
    assert await cp.get_alerting() is None
    config = AlertingConfig.model_validate(QUICK)
    assert await cp.put_alerting(config) is True
    assert await cp.put_alerting(config) is False
    assert await cp.get_alerting() == config


async def test_secrets_are_masked_when_read(cp: HttpControlPlane) -> None:
    """GET /v1/alerting masks SMTP passwords and webhook header values; the stored settings keep them."""
    secret = {
        "webhooks": [{"url": "http://127.0.0.1:9/h", "headers": {"Authorization": "Bearer s3cret"}}],
        "email": [{"host": "h", "sender": "a@b", "to": ["c@d"], "username": "u", "password": "hunter2"}],
    }
    await cp.put_alerting(AlertingConfig.model_validate(secret))
    shown = await cp.get_alerting()
    assert shown is not None
    assert shown.email[0].password == "********" and shown.webhooks[0].headers == {"Authorization": "********"}
    assert shown.email[0].username == "u"


async def test_invalid_settings_are_400_with_the_field(http: httpx.AsyncClient) -> None:
    """A rule with a bad expression is refused with a JSON error naming the field."""
    reply = await http.put("/v1/alerting", json={"rules": [{"name": "X", "expr": "rate(", "threshold": 1}]})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_request" and "expr" in reply.json()["error"]["message"]


async def test_silences_add_list_remove(cp: HttpControlPlane, http: httpx.AsyncClient) -> None:
    """POST /v1/silences (mapping or text) → id; listed; DELETE removes; unknown id 404; bad matchers 400."""
    one = await cp.add_silence({"service": "web"}, duration=3600, comment="deploy", created_by="ops")
    two = await cp.add_silence('alertname=~"High.*"', duration=60)
    assert one.matchers == 'service="web"' and one.ends_at - one.starts_at == 3600
    assert {s.id for s in await cp.list_silences()} == {one.id, two.id}
    await cp.remove_silence(one.id)
    assert [s.id for s in await cp.list_silences()] == [two.id]
    with pytest.raises(NotFoundError):
        await cp.remove_silence(one.id)
    for bad in ({"matchers": {}, "duration": 60}, {"matchers": 'x=~"("', "duration": 60}, {"matchers": "a=b"}):
        reply = await http.post("/v1/silences", json=bad)
        assert reply.status_code == 400, bad
        assert reply.json()["error"]["message"]
    assert (await http.get("/v1/alerts")).json()["silences"][0]["id"] == two.id


async def _until(predicate: Any, within: float = 10.0) -> None:
    """Poll the async predicate every 20 ms until it holds; AssertionError after `within` seconds."""
    for _ in range(int(within / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within} s: {predicate}")


async def test_service_fires_records_events_honours_silences_and_resolves(
    registry: Registry, app: Any, http: httpx.AsyncClient
) -> None:
    """No healthy web instance → WebDown firing in /v1/alerts and an alert.firing event; a silence marks it
    silenced; a passing instance resolves it (alert.resolved event)."""
    await registry.put_service(ServiceSpec(name="web", command=["x"], instances=1))
    await registry.put_alerting(QUICK)
    service = AlertService(registry)
    app.state.alerts = service
    task = asyncio.create_task(service.run())
    try:

        async def firing() -> bool:
            alerts = (await http.get("/v1/alerts")).json()["alerts"]
            return [(a["name"], a["state"]) for a in alerts] == [("WebDown", "firing")]

        await _until(firing)
        [alert] = (await http.get("/v1/alerts")).json()["alerts"]
        assert alert["labels"]["service"] == "web" and alert["value"] == 0 and alert["severity"] == "critical"
        assert alert["message"] == "web has 0 healthy instances" and alert["silenced"] is False

        async def event(kind: str) -> bool:
            return bool(await registry.events(kind=kind))

        await _until(lambda: event("alert.firing"))
        [fired] = await registry.events(kind="alert.firing")
        assert fired.subject == "web" and fired.level == "error" and fired.reason.startswith("WebDown: ")

        reply = await http.post("/v1/silences", json={"matchers": {"service": "web"}, "duration": 600})
        assert reply.status_code == 201

        async def silenced() -> bool:
            alerts = (await http.get("/v1/alerts")).json()["alerts"]
            return bool(alerts) and alerts[0]["silenced"] is True

        await _until(silenced)
        lease = await registry.grant_lease(30.0)
        await registry.register_instance(Instance(id="web-1", service="web", port=9001), lease)
        await registry.set_health("web", "web-1", Health.PASSING)
        await _until(lambda: event("alert.resolved"))

        async def quiet() -> bool:
            return (await http.get("/v1/alerts")).json()["alerts"] == []

        await _until(quiet)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    [resolved] = await registry.events(kind="alert.resolved")
    assert resolved.level == "info" and "resolved" in resolved.reason


async def test_new_settings_replace_the_evaluator(registry: Registry) -> None:
    """Storing other settings restarts the evaluator on them (its rules change)."""
    service = AlertService(registry)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 5)
        assert service.evaluator is not None
        assert [r.name for r in service.evaluator.rules][:1] == ["NoHealthyInstance"]
        await registry.put_alerting(QUICK)

        async def replaced() -> bool:
            return service.evaluator is not None and [r.name for r in service.evaluator.rules] == ["WebDown"]

        await _until(replaced)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


STATS = {
    "time": 1000.0,
    "window": 10.0,
    "gateways": [{"id": "gw-1", "reported_at": 999.5, "connections": 12, "workers": 2}],
    "routes": {
        "shop": {
            "requests": 200,
            "errors": 20,
            "rps": 20.0,
            "error_ratio": 0.1,
            "p50_ms": 4.0,
            "p99_ms": 1500.0,
            "status": {"2xx": 180, "3xx": 0, "4xx": 0, "5xx": 20},
        },
        "quiet": {
            "requests": 0,
            "errors": 0,
            "rps": 0.0,
            "error_ratio": 0.0,
            "p50_ms": None,
            "p99_ms": None,
            "status": {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0},
        },
    },
    "services": {"catalog": {"requests": 200, "errors": 20, "rps": 20.0, "error_ratio": 0.1, "p99_ms": 30.0}},
    "instances": {"catalog/catalog-1": {"requests": 100, "errors": 20, "error_ratio": 0.2, "p99_ms": 50.0}},
    "policies": {
        "shop": {"breaker": "open", "rate_limited": 3, "shed": 1, "retries": 7, "ejected": ["catalog/catalog-1"]},
        "quiet": {"breaker": None, "rate_limited": 0, "shed": 0, "retries": 0, "ejected": []},
    },
}


def test_stats_series_from_a_stats_document() -> None:
    """Routes, services, instances and policy state become labelled series; null latencies are left out."""
    series = stats_series(STATS)
    shop, quiet = labelset({"route": "shop"}), labelset({"route": "quiet"})
    assert series["error_ratio"] == {shop: 0.1, quiet: 0.0}
    assert series["latency_p99_seconds"] == {shop: 1.5}
    assert series["request_rate"][shop] == 20.0 and series["requests_total"][shop] == 200.0
    assert series["service_error_ratio"] == {labelset({"service": "catalog"}): 0.1}
    assert series["instance_error_ratio"] == {labelset({"service": "catalog", "instance": "catalog-1"}): 0.2}
    assert series["breaker_open"] == {shop: 1.0}
    assert series["rate_limited_total"][shop] == 3.0 and series["retries_total"][shop] == 7.0
    assert series["ejected_instances"] == {shop: 1.0, quiet: 0.0}
    assert series["gateway_connections"] == {labelset({"gateway": "gw-1"}): 12.0}
    assert series["gateways_reporting"] == {(): 1.0}


async def test_stats_source_answers_only_what_it_knows_and_nothing_without_stats() -> None:
    """StatsSource gives the asked stats metrics; with no stats document it knows none."""
    doc: dict[str, Any] | None = STATS
    source = StatsSource(lambda: doc)
    got = await source.collect(["error_ratio", "healthy_instances"])
    assert set(got) == {"error_ratio"}
    doc = None
    assert await source.collect(["error_ratio"]) == {}


async def test_builtin_error_rate_and_latency_rules_fire_on_stats() -> None:
    """With the stats source the built-in HighErrorRate and HighLatencyP99 rules are active and fire per route."""
    clock = FakeClock(1000.0)
    rules = [r for r in BUILTIN_RULES if r.name in ("HighErrorRate", "HighLatencyP99")]
    evaluator = AlertEvaluator(rules, [StatsSource(lambda: STATS)], [], clock=clock)
    await evaluator.evaluate_once()
    clock.advance(120.0)
    await evaluator.evaluate_once()
    firing = {(a.rule, a.label_map["route"]) for a in evaluator.alerts() if a.state is AlertState.FIRING}
    assert firing == {("HighErrorRate", "shop"), ("HighLatencyP99", "shop")}
    assert evaluator.inactive_rules() == []
