"""`ProjectConfig`: a whole jishi.yaml after validation — platform settings, services and routes.

Services and routes are the registry's own models (`ServiceSpec`, `Route`), so what the file says is exactly
what `ControlPlane.apply` stores; the loader (`jishi.config.load_config`) fills in names, splits command strings,
parses durations and resolves paths before validating, and turns every failure into a `ConfigError` that names
the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from jishi.registry.model import Name, Route, ServiceSpec

__all__ = ["GatewayConfig", "ProjectConfig", "ServerConfig", "check_listen", "listen_url"]


def check_listen(value: str) -> str:
    """Accept `HOST:PORT` with a port from 0 to 65535 (0: the kernel picks one)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"must be HOST:PORT, got {value!r}")
    return value


def listen_url(listen: str) -> str:
    """The http:// URL a client on this machine uses to reach a server listening on `listen`."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


Listen = Annotated[str, AfterValidator(check_listen)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    listen: Listen = "127.0.0.1:8500"  # the control plane's HTTP API
    data_dir: str = ".jishi"  # state.db, logs/; relative paths are resolved against the file's folder


class GatewayConfig(_Model):
    listen: Listen = "127.0.0.1:8080"
    workers: int = Field(default=1, ge=1, le=64)  # processes sharing the port (SO_REUSEPORT)
    access_log: str | None = None  # file for the access log; None: none


class ProjectConfig(_Model):
    source: str = ""  # the file it was loaded from, as given
    server: ServerConfig = Field(default_factory=lambda: ServerConfig())
    gateway: GatewayConfig = Field(default_factory=lambda: GatewayConfig())
    services: dict[Name, ServiceSpec] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)  # things that are allowed but probably wrong

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def control_plane_url(self) -> str:
        return listen_url(self.server.listen)

    @property
    def gateway_url(self) -> str:
        return listen_url(self.gateway.listen)

    def to_specs(self) -> tuple[list[ServiceSpec], list[Route]]:
        """What `ControlPlane.apply` takes: every service and every route of the file."""
        return list(self.services.values()), list(self.routes)
