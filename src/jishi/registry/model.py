"""The domain records jishi keeps in its store, and where it keeps them.

Layout of the store (every value is UTF-8 JSON of the model named):

    /jishi/services/<service>            ServiceSpec     desired state: command, instance count, checks
    /jishi/routes/<route>                Route           how the gateway maps requests to services
    /jishi/instances/<service>/<id>      Instance        a live instance; attached to its agent's lease
    /jishi/gateways/<id>                 GatewayInfo     a running gateway; attached to its lease
    /jishi/agents/<id>                   AgentInfo       a running agent; attached to its lease
    /jishi/kv/<key>                      (user data)     the user's own configuration KV
    /jishi/events/<id>                   EventRecord     what happened (instance exits, scale, alerts ...)
    /jishi/restarts/<service>/<id>       RestartRequest  an operator asked to restart this instance (its lease)
    /jishi/silences/<id>                 (SilenceSpec)   a silence of alerts (`jishi.alerting.SilenceSpec`)
    /jishi/config/alerting               (AlertingConfig) the `alerting:` section of the applied jishi.yaml

An instance takes traffic when its health is PASSING or WARNING and it is not draining.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from jishi.registry.policies import (
    AccessLogSpec,
    ActiveHealthCheck,
    AdaptiveConcurrency,
    BreakerPolicy,
    BulkheadPolicy,
    Duration,
    Fallback,
    HedgeSpec,
    LoadBalancing,
    OutlierDetection,
    RateLimit,
    RetryPolicy,
    Rewrite,
    UpstreamTLS,
)

PREFIX = "/jishi/"
SERVICES = "/jishi/services/"
ROUTES = "/jishi/routes/"
INSTANCES = "/jishi/instances/"
GATEWAYS = "/jishi/gateways/"
AGENTS = "/jishi/agents/"
KV = "/jishi/kv/"
EVENTS = "/jishi/events/"
RESTARTS = "/jishi/restarts/"
SILENCES = "/jishi/silences/"
ALERTING_CONFIG = "/jishi/config/alerting"

Name = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")]


class Health(enum.StrEnum):
    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthCheckSpec(_Model):
    type: Literal["http", "tcp", "none"] = "http"
    path: str = "/healthz"  # http only
    interval: float = Field(1.0, gt=0)
    timeout: float = Field(1.0, gt=0)
    rise: int = Field(1, ge=1)  # consecutive passes to become passing
    fall: int = Field(2, ge=1)  # consecutive failures to become critical
    expect_status: tuple[int, int] = (200, 399)  # inclusive range of passing HTTP statuses
    deregister_critical_after: float | None = Field(None, gt=0)  # seconds critical → removed from the registry


class RestartPolicy(_Model):
    initial_delay: float = Field(0.2, ge=0)  # first restart after this many seconds
    max_delay: float = Field(30.0, gt=0)  # cap of the exponential delay
    multiplier: float = Field(2.0, ge=1)
    reset_after: float = Field(10.0, gt=0)  # healthy this long → the next crash restarts after initial_delay
    jitter: float = Field(0.1, ge=0, le=1)  # ± fraction of randomness on each delay


class ServiceSpec(_Model):
    name: Name
    command: list[str] = Field(min_length=1)  # argv; "{port}" in any element is replaced by the instance port
    instances: int = Field(1, ge=0)
    env: dict[str, str] = Field(default_factory=dict)  # "{port}" is replaced here too
    cwd: str | None = None
    weight: int = Field(1, ge=1, le=1000)
    backup: bool = False  # instances of this service get traffic only when no primary is healthy
    health_check: HealthCheckSpec = Field(default_factory=lambda: HealthCheckSpec())
    restart: RestartPolicy = Field(default_factory=lambda: RestartPolicy())
    drain_seconds: float = Field(0.5, ge=0)  # after leaving rotation, before SIGTERM
    stop_timeout: float = Field(10.0, gt=0)  # SIGTERM → SIGKILL
    lease_ttl: float = Field(3.0, gt=0)  # no keep-alive for this long → the instance is removed


class Instance(_Model):
    id: str  # unique in the service, e.g. "catalog-3f9a1c"
    service: Name
    address: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    pid: int | None = None
    agent: str | None = None  # id of the agent that runs it (None: registered from outside)
    health: Health = Health.CRITICAL
    health_output: str = ""  # last check's message
    health_since: float = 0.0  # wall-clock time (unix seconds) of the last health change
    weight: int = Field(1, ge=1, le=1000)
    backup: bool = False
    draining: bool = False
    started_at: float = 0.0  # unix seconds
    restarts: int = 0
    deregister_critical_after: float | None = None

    @property
    def in_rotation(self) -> bool:
        return self.health is not Health.CRITICAL and not self.draining

    @property
    def key(self) -> str:
        return instance_key(self.service, self.id)


class RouteBackend(_Model):
    service: Name
    weight: int = Field(1, ge=1, le=1000)  # multiplies each instance's own weight
    backup: bool = False


class Route(_Model):
    name: Name
    prefix: str = Field("/", pattern=r"^/")
    host: str | None = None  # exact host, or "*.example.com"; None matches any host
    strip_prefix: bool = False
    backends: list[RouteBackend] = Field(min_length=1)
    connect_timeout: float = Field(1.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)  # waiting for the response head of one try
    retries: int = Field(2, ge=0, le=10)  # extra tries on another instance when connecting/sending fails
    # Traffic policies (`jishi.registry.policies`); each is off when absent.
    lb: LoadBalancing | None = None
    health_check: ActiveHealthCheck | None = None
    outlier: OutlierDetection | None = None
    retry: RetryPolicy | None = None  # overrides `retries` when given
    hedge: HedgeSpec | None = None  # idempotent requests slow to answer also go to another instance
    timeout: Duration | None = Field(None, gt=0)  # the whole request, every try included
    rewrite: Rewrite | None = None
    access_log: AccessLogSpec | None = None
    rate_limit: RateLimit | None = None
    concurrency: AdaptiveConcurrency | None = None
    bulkhead: BulkheadPolicy | None = None
    breaker: BreakerPolicy | None = None
    fallback: Fallback | None = None
    upstream_tls: UpstreamTLS | None = None


class EventRecord(_Model):
    """One thing that happened, kept in the store (with retention) for `jishi events` and the dashboard.

    kind is dotted: instance.started, instance.exited, instance.restarted, instance.health, instance.ejected,
    instance.restored, service.scaled, config.applied, alert.firing, alert.resolved, ...
    """

    id: str = ""  # assigned when stored; sorts by time
    time: float  # unix seconds
    kind: str
    subject: str  # what it is about: "catalog/catalog-3f9a1c", "catalog", a route or alert name
    reason: str  # a sentence for people
    level: Literal["info", "warning", "error"] = "info"
    labels: dict[str, str] = Field(default_factory=dict)


class RestartRequest(_Model):
    """An operator's request to restart one instance; the agent running it carries it out and clears it."""

    service: Name
    instance: str
    requested_at: float  # unix seconds
    reason: str = ""


class GatewayInfo(_Model):
    id: str
    url: str
    pid: int
    started_at: float


class AgentInfo(_Model):
    id: str
    host: str
    pid: int
    started_at: float


def service_key(name: str) -> str:
    return SERVICES + name


def route_key(name: str) -> str:
    return ROUTES + name


def instance_key(service: str, instance_id: str) -> str:
    return f"{INSTANCES}{service}/{instance_id}"


def restart_key(service: str, instance_id: str) -> str:
    return f"{RESTARTS}{service}/{instance_id}"
