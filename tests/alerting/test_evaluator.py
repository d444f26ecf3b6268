"""The evaluator on a real Registry (SqliteStore): sources, rounds at exact fake times, and end to end."""

from __future__ import annotations

import asyncio
import logging

import pytest
from alert_receivers import SmtpReceiver, WebhookReceiver

from jishi.alerting import (
    AlertEvaluator,
    AlertingConfig,
    AlertRule,
    AlertState,
    Notification,
    RegistrySource,
    SmtpNotifier,
    StaticSource,
    WebhookNotifier,
)
from jishi.core.alerts import Change, NotifyPolicy, Op, labelset
from jishi.errors import NotificationError
from jishi.registry import Health, Instance, Registry, ServiceSpec
from jishi.testing import FakeClock

CAT = labelset({"service": "catalog"})
NO_HEALTHY = AlertRule(
    name="NoHealthyInstance",
    expr='healthy_instances{service="catalog"}',
    op=Op.LT,
    threshold=1,
    for_=0.3,
    severity="critical",
    message="service {labels.service} has no healthy instance",
)


class Recorder:
    """A notifier that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)


class Broken:
    async def send(self, notification: Notification) -> None:
        raise NotificationError("webhook http://nowhere: not delivered")


async def _run_instances(registry: Registry, service: str, count: int, *, restarts: int = 0) -> int:
    lease = await registry.grant_lease(30.0)
    for i in range(count):
        inst = Instance(id=f"{service}-{i}", service=service, port=9000 + i, restarts=restarts)
        await registry.register_instance(inst, lease)
        await registry.set_health(service, inst.id, Health.PASSING)
    return lease


async def test_registry_source_counts_per_service(registry: Registry) -> None:
    """instances, healthy_instances and instance_restarts per service; a declared service with none has zeros."""
    for name in ("catalog", "orders", "idle"):
        await registry.put_service(ServiceSpec(name=name, command=["x"], instances=0 if name == "idle" else 2))
    await _run_instances(registry, "catalog", 2, restarts=3)
    lease = await registry.grant_lease(30.0)
    await registry.register_instance(Instance(id="catalog-x", service="catalog", port=9100), lease)  # critical
    data = await RegistrySource(registry).collect(["instances", "healthy_instances", "instance_restarts", "other"])
    orders = labelset({"service": "orders"})
    assert data == {
        "instances": {CAT: 3, orders: 0},
        "healthy_instances": {CAT: 2, orders: 0},
        "instance_restarts": {CAT: 6, orders: 0},
    }


async def test_rounds_at_exact_times(registry: Registry) -> None:
    """Deregistering every instance: pending at 1000, firing at 1000.3, notified at group_wait, resolved after."""
    clock, recorder, changes = FakeClock(1000.0), Recorder(), list[Change]()
    await registry.put_service(ServiceSpec(name="catalog", command=["x"], instances=1))
    lease = await _run_instances(registry, "catalog", 1)
    policy = NotifyPolicy(group_wait=0.5, repeat_interval=60.0)
    evaluator = AlertEvaluator(
        [NO_HEALTHY], [RegistrySource(registry)], [recorder], policy=policy, clock=clock, on_change=changes.append
    )
    assert await evaluator.evaluate_once() == []
    await registry.deregister_instance("catalog", "catalog-0")
    await evaluator.evaluate_once()
    clock.advance(0.3)
    await evaluator.evaluate_once()
    assert [(c.alert.state, c.at) for c in changes] == [(AlertState.PENDING, 1000.0), (AlertState.FIRING, 1000.3)]
    assert evaluator.book.next_due() == pytest.approx(1000.8)
    clock.set(1000.8)
    [note] = await evaluator.deliver_due()
    assert note.status == "firing" and note.firing[0].message == "service catalog has no healthy instance"
    await registry.register_instance(Instance(id="catalog-1", service="catalog", port=9001), lease)
    await registry.set_health("catalog", "catalog-1", Health.WARNING)  # warning is still in rotation
    clock.set(1001.0)
    await evaluator.evaluate_once()
    clock.set(1001.5)
    await evaluator.evaluate_once()
    assert [n.status for n in recorder.sent] == ["firing", "resolved"]


async def test_flapping_rule_fires_on_restarts_within_the_window(registry: Registry) -> None:
    """The built-in InstanceFlapping fires when restarts grow by more than 3 within 5 minutes."""
    clock, recorder = FakeClock(0.0), Recorder()
    config = AlertingConfig(builtin_rules=True, group_wait=0.0, log=False)
    flapping = [r for r in config.all_rules() if r.name == "InstanceFlapping"]
    evaluator = AlertEvaluator(flapping, [RegistrySource(registry)], [recorder], policy=config.policy(), clock=clock)
    lease = await registry.grant_lease(600.0)
    for t, restarts in [(0.0, 0), (60.0, 2), (120.0, 4)]:
        clock.set(t)
        await registry.register_instance(Instance(id="c-1", service="catalog", port=9000, restarts=restarts), lease)
        await evaluator.evaluate_once()
    [note] = recorder.sent
    assert note.firing[0].value == 4 and note.firing[0].label_map["service"] == "catalog"


async def test_rules_without_a_source_are_inactive(caplog: pytest.LogCaptureFixture) -> None:
    """Error-rate and latency rules stay inactive (logged once) until a source provides their metric."""
    caplog.set_level(logging.INFO, logger="jishi.alerting.evaluator")
    source, clock = StaticSource(), FakeClock(0.0)
    evaluator = AlertEvaluator(AlertingConfig().all_rules(), [source], [], clock=clock)
    await evaluator.evaluate_once()
    await evaluator.evaluate_once()
    assert evaluator.inactive_rules() == ["HighErrorRate", "HighLatencyP99", "InstanceFlapping", "NoHealthyInstance"]
    assert sum("is inactive" in r.getMessage() for r in caplog.records) == 4
    source.set("error_ratio", 0.5, route="api")
    await evaluator.evaluate_once()
    assert "HighErrorRate" not in evaluator.inactive_rules()
    assert [a.state for a in evaluator.alerts()] == [AlertState.PENDING]


async def test_a_failing_notifier_is_logged_and_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """One notifier raising NotificationError is logged as lost; the other still gets the notification."""
    source, recorder = StaticSource(), Recorder()
    source.set("healthy_instances", 0, service="catalog")
    rule = NO_HEALTHY.model_copy(update={"for_": 0.0})
    evaluator = AlertEvaluator([rule], [source], [Broken(), recorder], policy=NotifyPolicy(group_wait=0.0))
    await evaluator.evaluate_once()
    assert len(recorder.sent) == 1
    assert any("alert notification lost" in r.getMessage() for r in caplog.records)


async def test_silence_from_the_evaluator_mutes_notifications() -> None:
    """An alert under a silence made through the evaluator fires but sends nothing; unsilenced, it repeats."""
    source, recorder, clock = StaticSource(), Recorder(), FakeClock(0.0)
    source.set("healthy_instances", 0, service="catalog")
    rule = NO_HEALTHY.model_copy(update={"for_": 0.0})
    policy = NotifyPolicy(group_wait=0.0, repeat_interval=10.0)
    evaluator = AlertEvaluator([rule], [source], [recorder], policy=policy, clock=clock)
    silence = evaluator.silence({"service": "catalog"}, duration=60.0, comment="deploy")
    await evaluator.evaluate_once()
    assert [a.state for a in evaluator.alerts()] == [AlertState.FIRING] and recorder.sent == []
    [shown] = evaluator.snapshot()["alerts"]
    assert (shown["status"], shown["silenced"], evaluator.snapshot()["silences"][0]["comment"]) == (
        "firing",
        True,
        "deploy",
    )
    assert evaluator.unsilence(silence.id)
    clock.set(10.0)
    await evaluator.evaluate_once()
    assert len(recorder.sent) == 1


async def test_end_to_end_webhook_and_email(registry: Registry, webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    """All instances gone → firing webhook + e-mail after `for`; an instance back → resolved webhook + e-mail."""
    await registry.put_service(ServiceSpec(name="catalog", command=["x"], instances=2))
    lease = await _run_instances(registry, "catalog", 2)
    notifiers = [
        WebhookNotifier(webhook.url, timeout=2.0, retries=2, backoff=0.05),
        SmtpNotifier("127.0.0.1", smtp.port, sender="jishi@example.test", to=["ops@example.test"]),
    ]
    policy = NotifyPolicy(group_wait=0.1, repeat_interval=3600.0)
    evaluator = AlertEvaluator([NO_HEALTHY], [RegistrySource(registry)], notifiers, policy=policy, interval=0.05)
    async with evaluator:
        await asyncio.sleep(0.3)
        assert webhook.bodies == [] and smtp.messages == []
        for i in range(2):
            await registry.deregister_instance("catalog", f"catalog-{i}")
        [fired] = await webhook.wait_for(1)
        alert = fired["alerts"][0]
        assert (fired["status"], alert["labels"]["service"], alert["value"]) == ("firing", "catalog", 0.0)
        assert alert["fired_at"] - alert["active_since"] >= 0.3
        [mail] = await smtp.wait_for(1)
        assert mail["Subject"] == "[jishi] FIRING (1): NoHealthyInstance"
        assert "service catalog has no healthy instance" in mail.get_content()

        await registry.register_instance(Instance(id="catalog-9", service="catalog", port=9009), lease)
        await registry.set_health("catalog", "catalog-9", Health.PASSING)
        _, resolved = await webhook.wait_for(2)
        assert (resolved["status"], resolved["alerts"][0]["status"]) == ("resolved", "resolved")
        _, mail2 = await smtp.wait_for(2)
        assert mail2["Subject"] == "[jishi] RESOLVED (1): NoHealthyInstance"
    assert len(webhook.bodies) == 2 and len(smtp.messages) == 2
