"""`ProjectConfig`: a whole jishi.yaml after validation — platform settings, services, routes and alerting.

Services and routes are the registry's own models (`ServiceSpec`, `Route`), so what the file says is exactly
what `ControlPlane.apply` stores; the loader (`jishi.config.load_config`) fills in names, splits command strings,
parses durations and resolves paths before validating, and turns every failure into a `ConfigError` that names
the line. The `alerting:` section is `jishi.alerting.AlertingConfig` (its own durations: "30s", "5m", "1d"),
which `jishi up` stores for the control plane's alert evaluator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from jishi.alerting.rules import AlertingConfig
from jishi.config.listen import listen_url, parse_listen
from jishi.errors import ConfigError
from jishi.registry.model import Name, Route, ServiceSpec

__all__ = [
    "GatewayConfig",
    "GatewayLimits",
    "GatewayTLS",
    "ProjectConfig",
    "ServerConfig",
    "TLSCertificate",
    "check_listen",
    "listen_url",
]


def check_listen(value: str) -> str:
    """Accept `HOST:PORT` with a port from 0 to 65535 (0: the kernel picks one)."""
    try:
        parse_listen(value)
    except ConfigError as exc:
        raise ValueError(f"must be HOST:PORT, got {value!r}") from exc
    return value


Listen = Annotated[str, AfterValidator(check_listen)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    listen: Listen = "127.0.0.1:8500"  # the control plane's HTTP API
    data_dir: str = ".jishi"  # state.db, logs/; relative paths are resolved against the file's folder


class TLSCertificate(_Model):
    hosts: list[str] = Field(min_length=1)  # server names (SNI) it is for; "*.example.com" covers one label
    cert: str  # PEM certificate (chain) file; relative paths are resolved against the file's folder
    key: str  # PEM private key file


class GatewayTLS(_Model):
    cert: str  # the default certificate: for clients without SNI or with a name no `sni` entry has
    key: str
    sni: list[TLSCertificate] = Field(default_factory=list)


class GatewayLimits(_Model):
    """What the gateway allows its clients (sizes in bytes, times in seconds); see docs/configuration.md."""

    max_head_size: int = Field(default=32 * 1024, ge=1024)  # request line + headers; larger → 431
    max_body_size: int = Field(default=100 * 1024 * 1024, ge=0)  # larger → 413
    header_timeout: float = Field(default=10.0, gt=0)  # a request head not complete within it → 408, close
    body_timeout: float = Field(default=60.0, gt=0)  # longest wait between two reads of a request body → 408
    keepalive_timeout: float = Field(default=75.0, gt=0)  # an idle keep-alive connection closes after it
    send_timeout: float = Field(default=60.0, gt=0)  # a client taking no response byte for longer is cut off
    request_timeout: float = Field(default=0.0, ge=0)  # a whole exchange, request head to response end (0: none)


class GatewayConfig(_Model):
    listen: Listen = "127.0.0.1:8080"
    workers: int = Field(default=1, ge=1, le=64)  # processes sharing the port (SO_REUSEPORT)
    access_log: str | None = None  # file for the access log; None: none
    tls: GatewayTLS | None = None  # serve HTTPS (TLS termination) instead of HTTP on `listen`
    admin_listen: Listen | None = None  # /metrics and /healthz; unset: `jishi up` picks a free port
    limits: GatewayLimits = Field(default_factory=lambda: GatewayLimits())  # what clients may send, and how slowly


class ProjectConfig(_Model):
    source: str = ""  # the file it was loaded from, as given
    server: ServerConfig = Field(default_factory=lambda: ServerConfig())
    gateway: GatewayConfig = Field(default_factory=lambda: GatewayConfig())
    services: dict[Name, ServiceSpec] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    alerting: AlertingConfig = Field(default_factory=lambda: AlertingConfig())  # rules, notifiers, grouping
    warnings: list[str] = Field(default_factory=list)  # things that are allowed but probably wrong

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def control_plane_url(self) -> str:
        return listen_url(self.server.listen)

    @property
    def gateway_url(self) -> str:
        url = listen_url(self.gateway.listen)
        return "https://" + url.removeprefix("http://") if self.gateway.tls else url

    def to_specs(self) -> tuple[list[ServiceSpec], list[Route]]:
        """What `ControlPlane.apply` takes: every service and every route of the file."""
        return list(self.services.values()), list(self.routes)
