"""jishi.yaml: the declarative description of a project — platform settings, services and routes.

    config = load_config("examples/shop/jishi.yaml")           # ConfigError naming file:line, field and fix
    services, routes = config.to_specs()                       # what ControlPlane.apply takes
    config.control_plane_url, config.gateway_url, config.data_dir

See docs/configuration.md for every field, its default and its meaning.
"""

from jishi.config._load import load_config, parse_config
from jishi.config._model import (
    GatewayConfig,
    GatewayLimits,
    GatewayTLS,
    ProjectConfig,
    ServerConfig,
    TLSCertificate,
    listen_url,
)
from jishi.config._normalize import Overrides, parse_duration
from jishi.config._problems import ConfigErrors
from jishi.config.size import format_size, parse_size

__all__ = [
    "ConfigErrors",
    "GatewayConfig",
    "GatewayLimits",
    "GatewayTLS",
    "Overrides",
    "ProjectConfig",
    "ServerConfig",
    "TLSCertificate",
    "format_size",
    "listen_url",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]
