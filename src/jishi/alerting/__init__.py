"""Alerting: rules evaluated against metric sources, the pure alert book deciding, notifiers delivering.

    source = RegistrySource(registry)                       # any ControlPlane
    evaluator = AlertEvaluator.from_config(config, [source])  # config: AlertingConfig (jishi.yaml `alerting:`)
    async with evaluator:
        ...                                                   # evaluates every interval, notifies

The state machine, grouping, repeats and silences are `jishi.core.alerts` (pure); this package is the shell.
"""

from jishi.alerting.evaluator import AlertEvaluator, build_notifiers
from jishi.alerting.expr import Selector, parse_duration, parse_expr, parse_matchers
from jishi.alerting.notify import LogNotifier, Notifier, alert_json, payload, subject, text
from jishi.alerting.rules import (
    BUILTIN_RULES,
    AlertingConfig,
    AlertRule,
    EmailConfig,
    SilenceSpec,
    WebhookConfig,
    silence_json,
)
from jishi.alerting.smtp import SmtpNotifier
from jishi.alerting.sources import (
    REGISTRY_METRICS,
    STATS_METRICS,
    MetricSource,
    RegistrySource,
    StaticSource,
    StatsSource,
    stats_series,
)
from jishi.alerting.webhook import WebhookNotifier
from jishi.core.alerts import Alert, AlertState, Change, Matcher, MatchOp, Notification, NotifyPolicy, Silence

__all__ = [
    "BUILTIN_RULES",
    "REGISTRY_METRICS",
    "STATS_METRICS",
    "Alert",
    "AlertEvaluator",
    "AlertRule",
    "AlertState",
    "AlertingConfig",
    "Change",
    "EmailConfig",
    "LogNotifier",
    "MatchOp",
    "Matcher",
    "MetricSource",
    "Notification",
    "Notifier",
    "NotifyPolicy",
    "RegistrySource",
    "Selector",
    "Silence",
    "SilenceSpec",
    "SmtpNotifier",
    "StaticSource",
    "StatsSource",
    "WebhookConfig",
    "WebhookNotifier",
    "alert_json",
    "build_notifiers",
    "parse_duration",
    "parse_expr",
    "parse_matchers",
    "payload",
    "silence_json",
    "stats_series",
    "subject",
    "text",
]
