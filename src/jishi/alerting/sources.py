"""Where alert rules get their numbers: the `MetricSource` seam, and a source computed from the registry.

A source answers, for the metric names asked, every series it has (label set → value) and leaves out the
names it does not know. The evaluator asks its sources in order; the first that knows a name answers for it.
Two sources exist: the registry's counts and the gateways' request stats.

`RegistrySource` reads the control plane (any `ControlPlane`: the in-process `Registry` or the HTTP client):

    instances{service}           instances registered
    healthy_instances{service}   instances in rotation (health passing or warning, not draining)
    instance_restarts{service}   restarts summed over the service's registered instances (a counter)

Every service with a spec asking for at least one instance has a series even with no instance registered
(value 0), so "no healthy instance" can fire; a service scaled to 0 with no instance left has none.

`StatsSource` reads the gateways' aggregated stats (`GET /v1/stats`, `jishi.server.stats.StatsBoard.snapshot`):

    error_ratio{route}, latency_p99_seconds{route}, latency_p50_seconds{route}, request_rate{route},
    requests_total{route}, errors_total{route}                          per route
    service_error_ratio{service}, service_latency_p99_seconds{service}, service_request_rate{service}
    instance_error_ratio{service,instance}, instance_latency_p99_seconds{service,instance}
    breaker_open{route} (1 open or forced open, else 0), rate_limited_total{route}, shed_total{route},
    retries_total{route}, ejected_instances{route}                     per route policy state
    gateway_connections{gateway}, gateways_reporting

A latency is left out while its window saw no request (the stats give null), so a quiet route never alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from jishi.core.alerts import Labels, labelset
from jishi.registry.protocol import ControlPlane

__all__ = ["REGISTRY_METRICS", "STATS_METRICS", "MetricSource", "RegistrySource", "StaticSource", "StatsSource"]

Series = Mapping[Labels, float]
REGISTRY_METRICS = ("instances", "healthy_instances", "instance_restarts")


class MetricSource(Protocol):
    async def collect(self, names: Collection[str]) -> dict[str, Series]:
        """The series of each of `names` this source knows, read now; unknown names are left out."""
        ...


class RegistrySource:
    """Instance counts, health and restarts per service, read from the control plane."""

    def __init__(self, control_plane: ControlPlane) -> None:
        self._cp = control_plane

    async def collect(self, names: Collection[str]) -> dict[str, Series]:
        wanted = [n for n in names if n in REGISTRY_METRICS]
        if not wanted:
            return {}
        services = await self._cp.list_services()
        instances = await self._cp.list_instances()
        counts: dict[str, dict[str, float]] = {m: {} for m in REGISTRY_METRICS}
        for spec in services:
            if spec.instances > 0:
                for metric in REGISTRY_METRICS:
                    counts[metric][spec.name] = 0.0
        for inst in instances:
            for metric in REGISTRY_METRICS:
                counts[metric].setdefault(inst.service, 0.0)
            counts["instances"][inst.service] += 1
            counts["healthy_instances"][inst.service] += 1 if inst.in_rotation else 0
            counts["instance_restarts"][inst.service] += inst.restarts
        return {m: {labelset({"service": s}): v for s, v in counts[m].items()} for m in wanted}


class StaticSource:
    """Series set by hand (`set(name, value, **labels)`): for tests, and for values pushed from elsewhere."""

    def __init__(self) -> None:
        self._series: dict[str, dict[Labels, float]] = {}

    def set(self, name: str, value: float, **labels: str) -> None:
        self._series.setdefault(name, {})[labelset(labels)] = value

    def clear(self, name: str, **labels: str) -> None:
        """Forget one series (with labels) or every series of `name` (without)."""
        if labels:
            self._series.get(name, {}).pop(labelset(labels), None)
        else:
            self._series[name] = {}

    async def collect(self, names: Collection[str]) -> dict[str, Series]:
        return {n: dict(self._series[n]) for n in names if n in self._series}


_ROW_METRICS = {  # Row field → (metric suffix, scale); latencies become seconds
    "error_ratio": ("error_ratio", 1.0),
    "p99_ms": ("latency_p99_seconds", 0.001),
    "p50_ms": ("latency_p50_seconds", 0.001),
    "rps": ("request_rate", 1.0),
    "requests": ("requests_total", 1.0),
    "errors": ("errors_total", 1.0),
}
_POLICY_METRICS = ("rate_limited_total", "shed_total", "retries_total")
_OPEN = {"open", "forced_open"}
STATS_METRICS = (
    *(m for m, _ in _ROW_METRICS.values()),
    *(f"service_{m}" for m, _ in _ROW_METRICS.values()),
    *(f"instance_{m}" for m, _ in _ROW_METRICS.values()),
    "breaker_open",
    *_POLICY_METRICS,
    "ejected_instances",
    "gateway_connections",
    "gateways_reporting",
)


def stats_series(stats: Mapping[str, Any]) -> dict[str, dict[Labels, float]]:
    """Every metric of a `/v1/stats` document (the shape in the module doc), as series."""
    out: dict[str, dict[Labels, float]] = {name: {} for name in STATS_METRICS}

    def rows(table: str, prefix: str, labels_of: Callable[[str], dict[str, str]]) -> None:
        for key, row in (stats.get(table) or {}).items():
            labels = labelset(labels_of(key))
            for field, (metric, scale) in _ROW_METRICS.items():
                value = row.get(field)
                if isinstance(value, int | float):
                    out[prefix + metric][labels] = float(value) * scale

    def instance_labels(key: str) -> dict[str, str]:
        service, _, instance = key.partition("/")
        return {"service": service, "instance": instance}

    rows("routes", "", lambda key: {"route": key})
    rows("services", "service_", lambda key: {"service": key})
    rows("instances", "instance_", instance_labels)
    for route, state in (stats.get("policies") or {}).items():
        labels = labelset({"route": route})
        if state.get("breaker") is not None:
            out["breaker_open"][labels] = 1.0 if state["breaker"] in _OPEN else 0.0
        for metric in _POLICY_METRICS:
            value = state.get(metric.removesuffix("_total"))
            if isinstance(value, int | float):
                out[metric][labels] = float(value)
        out["ejected_instances"][labels] = float(len(state.get("ejected") or ()))
    gateways = stats.get("gateways") or []
    for gateway in gateways:
        out["gateway_connections"][labelset({"gateway": str(gateway.get("id", ""))})] = float(
            gateway.get("connections", 0)
        )
    out["gateways_reporting"][()] = float(len(gateways))
    return out


class StatsSource:
    """The gateways' request stats: `read()` returns the `/v1/stats` document now (e.g. a StatsBoard's
    `snapshot(now)`), or None while there is none — then this source knows no metric at all."""

    def __init__(self, read: Callable[[], Mapping[str, Any] | None]) -> None:
        self._read = read

    async def collect(self, names: Collection[str]) -> dict[str, Series]:
        wanted = [n for n in names if n in STATS_METRICS]
        if not wanted:
            return {}
        stats = self._read()
        if stats is None:
            return {}
        series = stats_series(stats)
        return {n: series[n] for n in wanted}
