"""The control plane's `/metrics` (Prometheus text format): store, API, registry and the gateways' traffic.

    metrics = ServerMetrics()
    store = metrics.instrument(store)          # every Store call timed (an `InstrumentedStore`)
    app.add_middleware(ApiCounter, counter=metrics.api_requests)
    body = await metrics.render(registry, board)

Metrics:

    jishi_store_revision                                      the store's current revision
    jishi_store_compact_revision                              history before it is forgotten
    jishi_store_operation_duration_seconds{op}                histogram per Store method (get, put, txn, ...)
    jishi_store_operation_errors_total{op}                    calls that raised
    jishi_api_requests_total{method,path,code}                API requests by route template and status
    jishi_services, jishi_gateways, jishi_agents              registry gauges
    jishi_instances{service,health}                           instances per health state
    jishi_instance_up{service,instance}                       1 while in rotation (passing/warning, not draining)
    jishi_instance_restarts_total{service,instance}           restarts the agent made (`Instance.restarts`)
    jishi_gateway_*                                           the live gateways' reports summed (see
                                                              `jishi.gateway.admin`: same names and labels)

Each scrape builds a fresh `CollectorRegistry` around the long-lived store histogram and API counter plus the
families read from the registry at that moment, so several servers (or tests) in one process never collide in
prometheus_client's global registry.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from jishi.gateway.admin import families as gateway_families
from jishi.metrics_listener import CONTENT_TYPE
from jishi.store import Compare, DeleteResult, Event, Lease, Op, PutResult, RangeResult, Store, TxnResult

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from jishi.registry import Registry
    from jishi.server.stats import StatsBoard

__all__ = ["CONTENT_TYPE", "ApiCounter", "InstrumentedStore", "ServerMetrics"]

STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class InstrumentedStore(Store):
    """A `Store` that times every call of `inner` into `latency{op}` and counts the failed ones."""

    def __init__(self, inner: Store, latency: Histogram, errors: Counter) -> None:
        self.inner = inner
        self._latency = latency
        self._errors = errors

    async def _timed(self, op: str, call: Any) -> Any:
        start = time.perf_counter()
        try:
            return await call
        except Exception:
            self._errors.labels(op).inc()
            raise
        finally:
            self._latency.labels(op).observe(time.perf_counter() - start)

    async def get(self, key: bytes, *, prefix: bool = False, revision: int = 0, limit: int = 0) -> RangeResult:
        result: RangeResult = await self._timed(
            "get", self.inner.get(key, prefix=prefix, revision=revision, limit=limit)
        )
        return result

    async def put(self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False) -> PutResult:
        result: PutResult = await self._timed("put", self.inner.put(key, value, lease=lease, prev_kv=prev_kv))
        return result

    async def delete(self, key: bytes, *, prefix: bool = False, prev_kv: bool = False) -> DeleteResult:
        result: DeleteResult = await self._timed("delete", self.inner.delete(key, prefix=prefix, prev_kv=prev_kv))
        return result

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> TxnResult:
        result: TxnResult = await self._timed("txn", self.inner.txn(compare, success, failure))
        return result

    async def grant(self, ttl: float, *, lease_id: int = 0) -> Lease:
        result: Lease = await self._timed("grant", self.inner.grant(ttl, lease_id=lease_id))
        return result

    async def keepalive(self, lease_id: int) -> Lease:
        result: Lease = await self._timed("keepalive", self.inner.keepalive(lease_id))
        return result

    async def revoke(self, lease_id: int) -> None:
        await self._timed("revoke", self.inner.revoke(lease_id))

    async def lease_info(self, lease_id: int) -> Lease:
        result: Lease = await self._timed("lease_info", self.inner.lease_info(lease_id))
        return result

    def watch(self, key: bytes, *, prefix: bool = False, start_revision: int = 0) -> AsyncIterator[Event]:
        return self.inner.watch(key, prefix=prefix, start_revision=start_revision)

    async def compact(self, revision: int) -> None:
        await self._timed("compact", self.inner.compact(revision))

    @property
    def compact_revision(self) -> int:
        return self.inner.compact_revision

    async def revision(self) -> int:
        result: int = await self._timed("revision", self.inner.revision())
        return result

    async def close(self) -> None:
        await self.inner.close()


class ApiCounter:
    """ASGI middleware counting API requests by method, route template (not the raw path) and status."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            self.counter.labels(scope.get("method", ""), path, str(status)).inc()


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class ServerMetrics:
    """The server's long-lived metrics and the scrape; see the module doc."""

    def __init__(self) -> None:
        self.store_latency = Histogram(
            "jishi_store_operation_duration_seconds",
            "Latency of store operations",
            ["op"],
            buckets=STORE_BUCKETS,
            registry=None,
        )
        self.store_errors = Counter(
            "jishi_store_operation_errors", "Store operations that raised", ["op"], registry=None
        )
        self.api_requests = Counter(
            "jishi_api_requests", "Control-plane API requests", ["method", "path", "code"], registry=None
        )

    def instrument(self, store: Store) -> InstrumentedStore:
        """`store` with every call timed (an already instrumented store is returned as it is)."""
        if isinstance(store, InstrumentedStore):
            return store
        return InstrumentedStore(store, self.store_latency, self.store_errors)

    async def render(self, registry: Registry, board: StatsBoard | None, now: float | None = None) -> bytes:
        """The exposition text of one scrape."""
        families = await registry_families(registry)
        if board is not None:
            families.extend(gateway_families(board.totals(time.time() if now is None else now)))
        scrape = CollectorRegistry(auto_describe=False)
        for collector in (self.store_latency, self.store_errors, self.api_requests, _Families(families)):
            scrape.register(collector)
        return generate_latest(scrape)


async def registry_families(registry: Registry) -> list[Metric]:
    """Store revision and the registry's gauges, read now (one snapshot of the registry)."""
    status = await registry.status()
    out: list[Metric] = [
        GaugeMetricFamily("jishi_store_revision", "The store's current revision", value=status.revision),
        GaugeMetricFamily(
            "jishi_store_compact_revision",
            "Revisions up to this one are compacted",
            value=registry.store.compact_revision,
        ),
        GaugeMetricFamily("jishi_services", "Services declared", value=len(status.services)),
        GaugeMetricFamily("jishi_gateways", "Gateways registered", value=len(status.gateways)),
        GaugeMetricFamily("jishi_agents", "Agents registered", value=len(status.agents)),
    ]
    by_health = GaugeMetricFamily("jishi_instances", "Instances by service and health", labels=["service", "health"])
    up = GaugeMetricFamily("jishi_instance_up", "1 while the instance is in rotation", labels=["service", "instance"])
    restarts = CounterMetricFamily(
        "jishi_instance_restarts", "Restarts of the instance by its agent", labels=["service", "instance"]
    )
    counts: dict[tuple[str, str], int] = {}
    for spec in status.services:
        for health in ("passing", "warning", "critical"):
            counts[(spec.name, health)] = 0
    for inst in sorted(status.instances, key=lambda i: (i.service, i.id)):
        key = (inst.service, str(inst.health))
        counts[key] = counts.get(key, 0) + 1
        up.add_metric([inst.service, inst.id], 1 if inst.in_rotation else 0)
        restarts.add_metric([inst.service, inst.id], inst.restarts)
    for (service, health), n in sorted(counts.items()):
        by_health.add_metric([service, health], n)
    out += [by_health, up, restarts]
    return out
