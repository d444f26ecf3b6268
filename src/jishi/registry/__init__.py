"""The registry domain: services, instances, routes and members, kept in the store.

`Registry(store)` implements the `ControlPlane` protocol in-process; `jishi.api.HttpControlPlane` implements it
over HTTP. The records and the key layout are in `jishi.registry.model`.
"""

from jishi.registry.model import (
    AgentInfo,
    GatewayInfo,
    Health,
    HealthCheckSpec,
    Instance,
    RestartPolicy,
    Route,
    RouteBackend,
    ServiceSpec,
)
from jishi.registry.protocol import ControlPlane
from jishi.registry.registry import ClusterStatus, Registry

__all__ = [
    "AgentInfo",
    "ClusterStatus",
    "ControlPlane",
    "GatewayInfo",
    "Health",
    "HealthCheckSpec",
    "Instance",
    "Registry",
    "RestartPolicy",
    "Route",
    "RouteBackend",
    "ServiceSpec",
]
