"""Notifiers against real receivers: webhook JSON POSTs with retries, e-mail over SMTP, and the log."""

from __future__ import annotations

import logging

import pytest
from alert_receivers import SmtpReceiver, WebhookReceiver

from jishi.alerting import LogNotifier, SmtpNotifier, WebhookNotifier, payload, subject, text
from jishi.core.alerts import Alert, AlertState, Notification, labelset
from jishi.errors import NotificationError
from jishi.testing import free_port


def _alert(service: str, state: AlertState = AlertState.FIRING) -> Alert:
    labels = labelset({"alertname": "NoHealthyInstance", "severity": "critical", "service": service})
    return Alert(
        "NoHealthyInstance",
        labels,
        state,
        value=0.0,
        message=f"service {service} has no healthy instance",
        active_since=90.0,
        fired_at=100.0,
        resolved_at=150.0 if state is AlertState.RESOLVED else None,
    )


FIRING = Notification((("alertname", "NoHealthyInstance"),), (_alert("catalog"), _alert("orders")), (), 110.0)
RESOLVED = Notification((("alertname", "NoHealthyInstance"),), (), (_alert("catalog", AlertState.RESOLVED),), 160.0)


def test_payload_shape() -> None:
    """The webhook JSON names status, group, counts and every alert with labels, value, message and times."""
    body = payload(FIRING)
    assert {k: body[k] for k in ("version", "status", "group", "firing", "resolved", "repeat", "at")} == {
        "version": "1",
        "status": "firing",
        "group": {"alertname": "NoHealthyInstance"},
        "firing": 2,
        "resolved": 0,
        "repeat": False,
        "at": 110.0,
    }
    first = body["alerts"][0]
    assert first["labels"]["service"] == "catalog" and first["status"] == "firing" and first["fired_at"] == 100.0
    assert payload(RESOLVED)["alerts"][0]["status"] == "resolved"


def test_subject_and_text() -> None:
    """The subject counts firing/resolved alerts and names the group; the text has one line per alert."""
    assert subject(FIRING) == "[jishi] FIRING (2): NoHealthyInstance"
    assert subject(RESOLVED) == "[jishi] RESOLVED (1): NoHealthyInstance"
    assert text(FIRING).splitlines() == [
        "Firing:",
        "- [critical] NoHealthyInstance {service=catalog}: service catalog has no healthy instance",
        "- [critical] NoHealthyInstance {service=orders}: service orders has no healthy instance",
    ]


async def test_webhook_posts_the_payload(webhook: WebhookReceiver) -> None:
    """One notification is one POST whose JSON body is payload(notification)."""
    notifier = WebhookNotifier(webhook.url, timeout=2.0)
    try:
        await notifier.send(FIRING)
    finally:
        await notifier.aclose()
    assert webhook.bodies == [payload(FIRING)]


async def test_webhook_retries_5xx_and_429_with_backoff(webhook: WebhookReceiver) -> None:
    """503 and 429 answers are retried after 0.01 then 0.02 s; the third try delivers."""
    webhook.statuses = [503, 429]
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    notifier = WebhookNotifier(webhook.url, retries=3, backoff=0.01, sleep=sleep)
    try:
        await notifier.send(FIRING)
    finally:
        await notifier.aclose()
    assert (webhook.hits, pauses, len(webhook.bodies)) == (3, [0.01, 0.02], 1)


async def test_webhook_does_not_retry_a_4xx(webhook: WebhookReceiver) -> None:
    """A 400 means the receiver refuses the body: one try, then NotificationError naming URL and status."""
    webhook.statuses = [400]
    notifier = WebhookNotifier(webhook.url, retries=3, backoff=0.0)
    try:
        with pytest.raises(NotificationError, match=r"/hook.*1 tries \(HTTP 400\)"):
            await notifier.send(FIRING)
    finally:
        await notifier.aclose()
    assert webhook.hits == 1


async def test_webhook_unreachable_fails_after_every_try() -> None:
    """Nothing listening: 1 + retries connection errors, then NotificationError listing them."""
    url = f"http://127.0.0.1:{free_port()}/hook"
    notifier = WebhookNotifier(url, timeout=1.0, retries=2, backoff=0.0)
    try:
        with pytest.raises(NotificationError, match=r"after 3 tries.*ConnectError"):
            await notifier.send(FIRING)
    finally:
        await notifier.aclose()


async def test_email_over_smtp(smtp: SmtpReceiver) -> None:
    """A firing then a resolved notification arrive as two e-mails with the subjects, recipients and bodies."""
    notifier = SmtpNotifier("127.0.0.1", smtp.port, sender="jishi@example.test", to=["ops@example.test"])
    await notifier.send(FIRING)
    await notifier.send(RESOLVED)
    first, second = await smtp.wait_for(2)
    assert (first["Subject"], first["To"], first["X-Jishi-Status"]) == (
        "[jishi] FIRING (2): NoHealthyInstance",
        "ops@example.test",
        "firing",
    )
    assert "service orders has no healthy instance" in first.get_content()
    assert second["Subject"] == "[jishi] RESOLVED (1): NoHealthyInstance"
    assert smtp.inbox.messages[0][0].rcpt_tos == ["ops@example.test"]


async def test_email_to_a_dead_server_raises() -> None:
    """No SMTP server listening: NotificationError naming the server."""
    port = free_port()
    notifier = SmtpNotifier("127.0.0.1", port, sender="a@example.test", to=["b@example.test"], timeout=2.0)
    with pytest.raises(NotificationError, match=f"127.0.0.1:{port}"):
        await notifier.send(FIRING)


async def test_log_notifier(caplog: pytest.LogCaptureFixture) -> None:
    """Firing notifications log at WARNING, resolved ones at INFO, with subject and alert lines."""
    caplog.set_level(logging.INFO, logger="jishi.alerting.notify")
    notifier = LogNotifier()
    await notifier.send(FIRING)
    await notifier.send(RESOLVED)
    assert [(r.levelno, r.getMessage().splitlines()[0]) for r in caplog.records] == [
        (logging.WARNING, "[jishi] FIRING (2): NoHealthyInstance"),
        (logging.INFO, "[jishi] RESOLVED (1): NoHealthyInstance"),
    ]
    assert "service catalog has no healthy instance" in caplog.records[0].getMessage()
