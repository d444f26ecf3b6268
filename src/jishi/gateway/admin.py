"""The gateway's admin listener: `/metrics` (Prometheus text format) and `/healthz`, on its own port.

    admin = AdminServer(source)          # source() -> the gateway's report (`jishi.gateway.stats.report`/`merge`)
    port = await admin.start("127.0.0.1", 9100)
    ...
    await admin.stop()

It is deliberately not the proxy: a scrape never competes with traffic for a route, and a gateway without
`--admin-listen` opens no second port. Each request is answered once and the connection closed (HTTP/1.1 with
`Connection: close`); anything but GET /metrics and GET /healthz gets a JSON error (`jishi.metrics_listener`).

`families(report)` turns a report into Prometheus metric families; the control plane uses it too, on the sum of
its gateways' reports, so a metric has the same name and labels wherever it is scraped:

    jishi_gateway_requests_total{route,service,instance,code_class}    responses ("2xx"... "5xx", "none")
    jishi_gateway_request_duration_seconds{route}                      histogram (_bucket{le}, _sum, _count)
    jishi_gateway_service_request_duration_seconds{service}            histogram
    jishi_gateway_connections, jishi_gateway_workers                   gauges
    jishi_gateway_upstream_idle_connections, ..._busy_connections      gauges (the instance connection pool)
    jishi_gateway_retries_total{route}, jishi_gateway_rate_limited_total{route}, jishi_gateway_shed_total{route}
    jishi_gateway_breaker_state{route,state}                           1 for the route's state, 0 for the others
    jishi_gateway_ejected_instances{route}                             gauge
    jishi_gateway_hedges_total{route,outcome}                          hedged tries: "sent", and "won" (relayed)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from jishi.gateway.stats import B0, BOUNDS, BREAKER_STATES, CLASSES, SUM, service_of
from jishi.metrics_listener import MetricsListener

__all__ = ["AdminServer", "families", "render"]


_LE = [str(b) for b in BOUNDS] + ["+Inf"]


def _class_label(index: int) -> str:
    return f"{index}xx" if index else "none"


def _histogram(name: str, doc: str, label: str, groups: dict[str, list[Any]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, row in sorted(groups.items()):
        running = 0
        buckets = []
        for le, count in zip(_LE, row[B0:SUM], strict=True):
            running += count
            buckets.append((le, running))
        family.add_metric([key], buckets, row[SUM])
    return family


def _add_rows(into: dict[str, list[Any]], key: str, row: list[Any]) -> None:
    have = into.get(key)
    if have is None:
        into[key] = list(row)
    else:
        for i, value in enumerate(row):
            have[i] += value


def families(report: dict[str, Any]) -> Iterator[Metric]:
    """The metric families of a gateway report (or of a sum of reports); see the module doc."""
    requests = CounterMetricFamily(
        "jishi_gateway_requests", "Responses by route, service, instance and status class", labels=[
            "route", "service", "instance", "code_class"
        ]
    )  # fmt: skip
    by_route: dict[str, list[Any]] = {}
    by_service: dict[str, list[Any]] = {}
    for route, instance, row in sorted(report.get("rows", ()), key=lambda r: (r[0], r[1])):
        service = service_of(instance)
        for index in range(CLASSES):
            if row[index]:
                requests.add_metric([route, service, instance, _class_label(index)], row[index])
        _add_rows(by_route, route, row)
        if service:
            _add_rows(by_service, service, row)
    yield requests
    yield _histogram(
        "jishi_gateway_request_duration_seconds", "Request latency per route (gateway in to response end)", "route",
        by_route,
    )  # fmt: skip
    yield _histogram(
        "jishi_gateway_service_request_duration_seconds", "Request latency per service", "service", by_service
    )
    yield GaugeMetricFamily("jishi_gateway_connections", "Open client connections", value=report.get("connections", 0))
    yield GaugeMetricFamily(
        "jishi_gateway_workers", "Gateway worker processes reporting", value=report.get("workers", 0)
    )
    upstream = report.get("upstream", {})
    yield GaugeMetricFamily(
        "jishi_gateway_upstream_idle_connections", "Idle pooled connections to instances", value=upstream.get("idle", 0)
    )
    yield GaugeMetricFamily(
        "jishi_gateway_upstream_busy_connections",
        "Connections to instances carrying a request",
        value=upstream.get("busy", 0),
    )
    policies = report.get("policies", {})
    retries = CounterMetricFamily(
        "jishi_gateway_retries", "Retries (tries after the first) per route", labels=["route"]
    )
    limited = CounterMetricFamily("jishi_gateway_rate_limited", "Requests refused by a rate limit", labels=["route"])
    shed = CounterMetricFamily(
        "jishi_gateway_shed", "Requests shed by a concurrency limit or bulkhead", labels=["route"]
    )
    breaker = GaugeMetricFamily(
        "jishi_gateway_breaker_state", "Circuit breaker state per route", labels=["route", "state"]
    )
    ejected = GaugeMetricFamily("jishi_gateway_ejected_instances", "Instances ejected as outliers", labels=["route"])
    hedges = CounterMetricFamily(
        "jishi_gateway_hedges",
        "Hedged tries sent, and those whose answer was the one relayed",
        labels=["route", "outcome"],
    )
    for name, state in sorted(policies.items()):
        hedges.add_metric([name, "sent"], state.get("hedges_sent") or 0)
        hedges.add_metric([name, "won"], state.get("hedges_won") or 0)
        retries.add_metric([name], state.get("retries") or 0)
        limited.add_metric([name], state.get("rate_limited") or 0)
        shed.add_metric([name], state.get("shed") or 0)
        ejected.add_metric([name], len(state.get("ejected") or ()))
        current = state.get("breaker")
        if current is not None:
            for value in BREAKER_STATES:
                breaker.add_metric([name, value], 1 if value == current else 0)
    yield from (retries, limited, shed, breaker, ejected, hedges)


class _ReportCollector:
    def __init__(self, source: Callable[[], dict[str, Any]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        return families(self.source())


def render(source: Callable[[], dict[str, Any]]) -> bytes:
    """The Prometheus text exposition of `source()`'s report."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReportCollector(source))
    return generate_latest(registry)


class AdminServer(MetricsListener):
    """GET /metrics (the report of `source`) and GET /healthz on their own listener; see the module doc."""

    def __init__(self, source: Callable[[], dict[str, Any]], *, timeout: float = 5.0) -> None:
        super().__init__(lambda: render(source), "gateway admin (metrics)", timeout=timeout)
        self.source = source
