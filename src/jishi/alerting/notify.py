"""The notifier seam (`async send(notification)`), what a notification says, and the log notifier.

Every notifier turns one `jishi.core.alerts.Notification` into one delivery; it raises `NotificationError`
when it cannot deliver (after its own retries), and the evaluator logs that and carries on with the others.
`payload()` is the JSON a webhook receives; `subject()` and `text()` are what an e-mail and the log say.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from jishi.core.alerts import Alert, Notification

__all__ = ["LogNotifier", "Notifier", "alert_json", "payload", "subject", "text"]

log = logging.getLogger(__name__)


class Notifier(Protocol):
    async def send(self, notification: Notification) -> None:
        """Deliver one notification; raise NotificationError if it cannot be delivered."""
        ...


def alert_json(alert: Alert) -> dict[str, Any]:
    """One alert as JSON: state (pending, firing, resolved), rule, severity, labels, value, message, times."""
    labels = alert.label_map
    return {
        "status": alert.state.value,
        "rule": alert.rule,
        "severity": labels.get("severity", ""),
        "labels": labels,
        "value": alert.value,
        "message": alert.message,
        "active_since": alert.active_since,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
    }


def payload(notification: Notification) -> dict[str, Any]:
    """The JSON body of a webhook POST (version 1)."""
    return {
        "version": "1",
        "source": "jishi",
        "status": notification.status,
        "group": dict(notification.group),
        "repeat": notification.repeat,
        "at": notification.at,
        "firing": len(notification.firing),
        "resolved": len(notification.resolved),
        "alerts": [alert_json(a) for a in (*notification.firing, *notification.resolved)],
    }


def subject(notification: Notification) -> str:
    """One line: `[jishi] FIRING (2): NoHealthyInstance` or `[jishi] RESOLVED (1): …`."""
    group = ", ".join(v for _, v in notification.group if v) or "alerts"
    if notification.firing:
        head = f"FIRING ({len(notification.firing)})"
        if notification.resolved:
            head += f", resolved ({len(notification.resolved)})"
    else:
        head = f"RESOLVED ({len(notification.resolved)})"
    return f"[jishi] {head}: {group}"


def text(notification: Notification) -> str:
    """A plain-text body: one line per alert, firing first."""
    lines: list[str] = []
    for title, alerts in (("Firing", notification.firing), ("Resolved", notification.resolved)):
        if alerts:
            lines.append(f"{title}:")
            for a in alerts:
                labels = ", ".join(f"{k}={v}" for k, v in a.labels if k not in ("alertname", "severity"))
                lines.append(f"- [{a.label_map.get('severity', '')}] {a.rule} {{{labels}}}: {a.message}")
            lines.append("")
    if notification.repeat:
        lines.append("(repeated: nothing changed since the last notification)")
    return "\n".join(lines).rstrip() + "\n"


class LogNotifier:
    """Writes each notification to the log: WARNING while something fires, INFO for resolves."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    async def send(self, notification: Notification) -> None:
        level = logging.WARNING if notification.firing else logging.INFO
        self._log.log(level, "%s\n%s", subject(notification), text(notification).rstrip())
