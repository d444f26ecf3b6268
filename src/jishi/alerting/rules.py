"""Alert rules and the alerting settings of a `jishi.yaml`, as pydantic models.

    alerting:
      interval: 5s
      group_by: [alertname]
      group_wait: 10s
      repeat_interval: 4h
      rules:
        - name: CatalogDown
          expr: healthy_instances{service="catalog"}
          op: "<"
          threshold: 1
          for: 30s
          labels: {team: shop}
          severity: critical
          message: "catalog has {value} healthy instances"
      webhooks: [{url: "http://127.0.0.1:9000/hook"}]
      email: [{host: 127.0.0.1, port: 25, sender: jishi@example.com, to: [ops@example.com]}]

Built-in rules (`BUILTIN_RULES`, on unless `builtin_rules: false`; a rule of the same name replaces one):
- NoHealthyInstance — a service that should run instances has none in rotation for 10 s;
- InstanceFlapping — a service's instances restarted more than 3 times in 5 minutes;
- HighErrorRate, HighLatencyP99 — on the gateway's `error_ratio` and `latency_p99_seconds` per route, which
  the control plane reads from the gateways' reports (`jishi.alerting.StatsSource` over `/v1/stats`); with no
  gateway reporting, the evaluator reports both rules as inactive.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from jishi.alerting.expr import Selector, parse_duration, parse_expr, parse_matchers
from jishi.core.alerts import NotifyPolicy, Op, Silence

__all__ = [
    "BUILTIN_RULES",
    "AlertRule",
    "AlertingConfig",
    "EmailConfig",
    "SilenceSpec",
    "WebhookConfig",
    "silence_json",
]

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AlertRule(_Model):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
    expr: str
    op: Op = Op.GT
    threshold: float
    for_: Duration = Field(0.0, alias="for")
    labels: dict[str, str] = Field(default_factory=dict)
    message: str = "{labels.alertname}: value {value}"
    severity: Literal["info", "warning", "critical"] = "warning"

    @field_validator("expr")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_expr(value)  # a ValueError here becomes a validation error naming the field
        return value

    @field_validator("labels")
    @classmethod
    def _no_reserved_labels(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {"alertname", "severity"} & set(value)
        if reserved:
            raise ValueError(f"labels {sorted(reserved)} are set by jishi; use the rule's name and severity instead")
        return value

    @cached_property
    def selector(self) -> Selector:
        return parse_expr(self.expr)


BUILTIN_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        name="NoHealthyInstance",
        expr="healthy_instances",
        op=Op.LT,
        threshold=1,
        for_=10.0,
        severity="critical",
        message="service {labels.service} has no healthy instance ({value} in rotation)",
    ),
    AlertRule(
        name="InstanceFlapping",
        expr="increase(instance_restarts[5m])",
        op=Op.GT,
        threshold=3,
        severity="warning",
        message="instances of service {labels.service} restarted {value} times in 5 minutes",
    ),
    AlertRule(
        name="HighErrorRate",
        expr="error_ratio",
        op=Op.GT,
        threshold=0.05,
        for_=60.0,
        severity="critical",
        message="route {labels.route}: {value} of requests fail",
    ),
    AlertRule(
        name="HighLatencyP99",
        expr="latency_p99_seconds",
        op=Op.GT,
        threshold=1.0,
        for_=120.0,
        severity="warning",
        message="route {labels.route}: p99 latency is {value} s",
    ),
)


class WebhookConfig(_Model):
    url: str = Field(pattern=r"^https?://")
    timeout: Duration = 5.0
    retries: int = Field(3, ge=0, le=10)
    backoff: Duration = 0.5  # first pause between tries; doubles each time
    headers: dict[str, str] = Field(default_factory=dict)


class EmailConfig(_Model):
    host: str
    port: int = Field(25, ge=1, le=65535)
    sender: str
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: Duration = 10.0


class AlertingConfig(_Model):
    interval: Duration = 5.0
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    group_wait: Duration = 10.0
    repeat_interval: Duration = 4 * 3600.0
    keep_resolved: Duration = 900.0
    builtin_rules: bool = True
    rules: list[AlertRule] = Field(default_factory=list)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    email: list[EmailConfig] = Field(default_factory=list)
    log: bool = True  # also write every notification to the log

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[AlertRule]) -> list[AlertRule]:
        names = [r.name for r in rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"alert rule names must be unique; {twice} appear more than once")
        return rules

    def policy(self) -> NotifyPolicy:
        return NotifyPolicy(tuple(self.group_by), self.group_wait, self.repeat_interval, self.keep_resolved)

    def all_rules(self) -> list[AlertRule]:
        """The built-in rules (unless turned off) and the configured ones; a configured rule replaces its namesake."""
        own = {r.name for r in self.rules}
        builtin = [r for r in BUILTIN_RULES if r.name not in own] if self.builtin_rules else []
        return [*builtin, *self.rules]


class SilenceSpec(_Model):
    """A silence as kept in the store or sent to the API; `matchers` as in `service="catalog",severity=~"crit.*"`."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    matchers: str
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""

    @field_validator("matchers")
    @classmethod
    def _parses(cls, value: str) -> str:
        if not parse_matchers(value):
            raise ValueError('a silence needs at least one matcher, e.g. service="catalog"')
        return value

    def to_silence(self) -> Silence:
        return Silence(
            self.id, parse_matchers(self.matchers), self.starts_at, self.ends_at, self.comment, self.created_by
        )


def silence_json(silence: Silence) -> dict[str, object]:
    """A silence as `SilenceSpec` JSON."""
    matchers = ",".join(f'{m.name}{m.op}"{_quote(m.value)}"' for m in silence.matchers)
    spec = SilenceSpec(
        id=silence.id,
        matchers=matchers,
        starts_at=silence.starts_at,
        ends_at=silence.ends_at,
        comment=silence.comment,
        created_by=silence.created_by,
    )
    return spec.model_dump()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
