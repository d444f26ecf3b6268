"""Where alert rules get their numbers: the `MetricSource` seam, and a source computed from the registry.

A source answers, for the metric names asked, every series it has (label set → value) and leaves out the
names it does not know. The evaluator asks its sources in order; the first that knows a name answers for it.
The metrics layer (Prometheus-style counters and histograms) will be one more source behind this seam.

`RegistrySource` reads the control plane (any `ControlPlane`: the in-process `Registry` or the HTTP client):

    instances{service}           instances registered
    healthy_instances{service}   instances in rotation (health passing or warning, not draining)
    instance_restarts{service}   restarts summed over the service's registered instances (a counter)

Every service with a spec asking for at least one instance has a series even with no instance registered
(value 0), so "no healthy instance" can fire; a service scaled to 0 with no instance left has none.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from jishi.core.alerts import Labels, labelset
from jishi.registry.protocol import ControlPlane

__all__ = ["REGISTRY_METRICS", "MetricSource", "RegistrySource", "StaticSource"]

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
