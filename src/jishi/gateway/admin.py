"""The gateway's admin listener: `/metrics` (Prometheus text format) and `/healthz`, on its own port.

    admin = AdminServer(source)          # source() -> the gateway's report (`jishi.gateway.stats.report`/`merge`)
    port = await admin.start("127.0.0.1", 9100)
    ...
    await admin.stop()

It is deliberately not the proxy: a scrape never competes with traffic for a route, and a gateway without
`--admin-listen` opens no second port. Each request is answered once and the connection closed (HTTP/1.1 with
`Connection: close`); anything but GET /metrics and GET /healthz gets a JSON error.

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
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from jishi.gateway.stats import B0, BOUNDS, BREAKER_STATES, CLASSES, SUM, service_of

__all__ = ["AdminServer", "families", "render"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LE = [str(b) for b in BOUNDS] + ["+Inf"]
_HEAD_LIMIT = 8192


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
    for name, state in sorted(policies.items()):
        retries.add_metric([name], state.get("retries") or 0)
        limited.add_metric([name], state.get("rate_limited") or 0)
        shed.add_metric([name], state.get("shed") or 0)
        ejected.add_metric([name], len(state.get("ejected") or ()))
        current = state.get("breaker")
        if current is not None:
            for value in BREAKER_STATES:
                breaker.add_metric([name, value], 1 if value == current else 0)
    yield from (retries, limited, shed, breaker, ejected)


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


class AdminServer:
    """GET /metrics and GET /healthz on their own listener; see the module doc."""

    def __init__(self, source: Callable[[], dict[str, Any]], *, timeout: float = 5.0) -> None:
        self.source = source
        self.timeout = timeout
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the bound port."""
        self._server = await asyncio.start_server(self._handle, host, port)
        bound = int(self._server.sockets[0].getsockname()[1])
        log.info("gateway admin (metrics) on http://%s:%d/metrics", host, bound)
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                head = await reader.readuntil(b"\r\n\r\n")
                status, ctype, body = self._answer(head[:_HEAD_LIMIT])
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            log.debug("admin connection dropped: %s", exc)
        except Exception:
            log.exception("the admin listener failed to answer")
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].split()
        method, target = (parts[0], parts[1]) if len(parts) >= 2 else (b"", b"")
        path = target.split(b"?", 1)[0]
        if method != b"GET":
            return _error("405 Method Not Allowed", "method_not_allowed", "the admin listener answers GET only")
        if path == b"/metrics":
            return "200 OK", CONTENT_TYPE, render(self.source)
        if path == b"/healthz":
            return "200 OK", "application/json", b'{"status": "ok"}'
        return _error(
            "404 Not Found", "not_found", f"no {path.decode(errors='replace')} here: try /metrics or /healthz"
        )


def _error(status: str, code: str, message: str) -> tuple[str, str, bytes]:
    return status, "application/json", json.dumps({"error": {"code": code, "message": message}}).encode()
