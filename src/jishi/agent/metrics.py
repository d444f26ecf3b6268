"""The agent's `/metrics` (Prometheus text format) on an optional listener (`--metrics-listen HOST:PORT`).

    metrics = AgentMetrics(agent)
    metrics.observe_probes()            # health checks counted and timed from now on
    port = await metrics.start("127.0.0.1", 0)
    ...
    await metrics.stop()

Metrics, read from the agent's slots at scrape time (nothing is recorded on the agent's own paths except the
health probes):

    jishi_agent_slots{service}                                    slots the agent keeps for the service
    jishi_agent_instances{service}                                slots with a running process
    jishi_agent_instance_restarts_total{service,instance}         restarts of the slot's process
    jishi_agent_instance_health{service,instance,state}           1 for the instance's health, 0 for the others
    jishi_agent_health_checks_total{service,instance,outcome}     probe results (pass, warn, fail)
    jishi_agent_health_check_duration_seconds{service}            probe latency histogram

Probes are observed by wrapping the probe the slot supervisors call (`jishi.agent.supervisor.probe`, the one
seam they have for it); `stop()` puts the original back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from jishi.agent import supervisor as supervisor_module
from jishi.config.listen import parse_listen
from jishi.core.health import Outcome
from jishi.metrics_listener import MetricsListener
from jishi.registry.model import Health, HealthCheckSpec

if TYPE_CHECKING:
    from jishi.agent.agent import Agent

__all__ = ["AgentMetrics", "serve_metrics"]


PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SEAM = "probe"  # the name the slot supervisors call their health probe by
Probe = Callable[[HealthCheckSpec, str, int], Awaitable[tuple[Outcome, str]]]


class AgentMetrics:
    """The metrics of `agent` and the listener that serves them; see the module doc."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.checks = Counter(
            "jishi_agent_health_checks", "Health probe results", ["service", "instance", "outcome"], registry=None
        )
        self.check_latency = Histogram(
            "jishi_agent_health_check_duration_seconds",
            "Health probe latency",
            ["service"],
            buckets=PROBE_BUCKETS,
            registry=None,
        )
        self._original: Probe | None = None
        self._listener = MetricsListener(self.render, "agent metrics")

    # --- probes
    def observe_probes(self) -> None:
        """Count and time every health probe the agent's supervisors make from now on."""
        if self._original is not None:
            return
        original: Probe = getattr(supervisor_module, _SEAM)
        self._original = original

        async def observed(check: HealthCheckSpec, host: str, port: int) -> tuple[Outcome, str]:
            start = time.perf_counter()
            outcome, output = await original(check, host, port)
            service, instance = self._instance_at(port)
            self.check_latency.labels(service).observe(time.perf_counter() - start)
            self.checks.labels(service, instance, outcome.name.lower()).inc()
            return outcome, output

        setattr(supervisor_module, _SEAM, observed)

    def _instance_at(self, port: int) -> tuple[str, str]:
        for sup in list(self.agent.slots.values()):
            if sup.record is not None and sup.record.port == port:
                return sup.spec.name, sup.instance_id
        return "", ""

    # --- scrape
    def collect(self) -> Iterator[Metric]:
        slots = GaugeMetricFamily("jishi_agent_slots", "Slots the agent keeps per service", labels=["service"])
        running = GaugeMetricFamily("jishi_agent_instances", "Slots with a running process", labels=["service"])
        restarts = CounterMetricFamily(
            "jishi_agent_instance_restarts", "Restarts of the slot's process", labels=["service", "instance"]
        )
        health = GaugeMetricFamily(
            "jishi_agent_instance_health", "Health of the running instance", labels=["service", "instance", "state"]
        )
        per_service: dict[str, list[int]] = {}
        for sup in sorted(self.agent.slots.values(), key=lambda s: s.instance_id):
            service = sup.spec.name
            counts = per_service.setdefault(service, [0, 0])
            counts[0] += 1
            counts[1] += sup.pid is not None
            restarts.add_metric([service, sup.instance_id], sup.restarts)
            if sup.record is not None:
                for state in Health:
                    health.add_metric([service, sup.instance_id, state.value], 1 if sup.record.health is state else 0)
        for service, (n_slots, n_running) in sorted(per_service.items()):
            slots.add_metric([service], n_slots)
            running.add_metric([service], n_running)
        yield from (slots, running, restarts, health)

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        for collector in (self, self.checks, self.check_latency):
            registry.register(collector)
        return generate_latest(registry)

    # --- listener
    async def start(self, host: str, port: int) -> int:
        """Serve GET /metrics (and /healthz) on host:port (0: any free port); returns the bound port."""
        return await self._listener.start(host, port)

    async def stop(self) -> None:
        if self._original is not None:
            setattr(supervisor_module, _SEAM, self._original)
            self._original = None
        await self._listener.stop()


async def serve_metrics(agent: Agent, listen: str) -> AgentMetrics:
    """Observe `agent`'s probes and serve its metrics on `listen` (HOST:PORT); `await .stop()` when done."""
    host, port = parse_listen(listen)
    metrics = AgentMetrics(agent)
    metrics.observe_probes()
    try:
        await metrics.start(host, port)
    except OSError:
        await metrics.stop()
        raise
    return metrics
