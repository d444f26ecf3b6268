"""Active health checks from the gateway: a route's `health_check` section probes each of its instances.

`HealthChecks` belongs to a `Proxy`. `follow(table)` (from `Proxy.set_table`) keeps one task per route that has
a `health_check` section: a route whose section changed gets a new task, a route that lost it (or left the
table) has its task cancelled; `stop()` cancels and awaits them all. With several gateway workers each worker
checks on its own.

Every `interval` seconds a route's task probes all the route's peers at once, each within `timeout`:

    http   GET <path> (Connection: close); passes when the status is within `expect_status` (inclusive)
    tcp    a connection can be opened

A route with `upstream_tls` is checked over TLS as its requests go (`jishi.gateway.upstream_tls`: the same CA,
client certificate and SNI name): a handshake that fails is a failed check. A probe that fails in an unexpected
way is logged and counts as a failed check; it never ends the round for the other peers.

and hands each result to the route's current peer group (`PeerGroup.health`): `fall` failures in a row take a
peer out of that route's rotation, `rise` passes in a row put it back (then it ramps up under slow start). Peers
start in the rotation (the registry already reports them healthy), unless the section says `wait_for_pass`: then
a peer new to the route takes traffic only after a check has passed it, and a table that brings such peers starts
a round at once instead of at the route's next interval. Changes are logged and become events
(instance.ejected / instance.restored / instance.admitted, label reason=health_check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from jishi.gateway import balancing
from jishi.gateway.upstream_tls import client_context, server_name

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.core.routing import RoutingTable
    from jishi.gateway.proxy import Proxy
    from jishi.registry.policies import UpstreamTLS

__all__ = ["HealthChecks", "probe"]

log = logging.getLogger(__name__)


class HealthChecks:
    """The active health-check tasks of one proxy; see the module doc."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self._tasks: dict[str, tuple[Any, asyncio.Task[None]]] = {}  # route name → (its section, its task)
        self._ending: set[asyncio.Task[None]] = set()
        self._wake: dict[str, asyncio.Event] = {}  # route name → set when new peers wait for their first check

    def follow(self, table: RoutingTable) -> None:
        """Check the routes of `table` that have a health_check section (and no others)."""
        wanted = {name: r.health_check for name, r in table.routes.items() if r.health_check is not None}
        for name, (spec, _task) in list(self._tasks.items()):
            if wanted.get(name) != spec:
                self._cancel(name)
        for name, spec in wanted.items():
            if name not in self._tasks:
                self._wake[name] = asyncio.Event()
                task = self.proxy.loop.create_task(self._run(name, spec), name=f"health-check {name}")
                self._tasks[name] = (spec, task)
            else:
                lb = table.routes[name].lb
                if lb is not None and lb.unchecked():
                    self._wake[name].set()  # new peers wait out of the rotation: check them now

    def _cancel(self, name: str) -> None:
        self._wake.pop(name, None)
        _, task = self._tasks.pop(name)
        task.cancel()
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def stop(self) -> None:
        """Cancel every check and wait for the tasks to end."""
        for name in list(self._tasks):
            self._cancel(name)
        tasks = list(self._ending)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, name: str, spec: Any) -> None:
        loop = self.proxy.loop
        wake = self._wake[name]
        while True:
            started = loop.time()
            wake.clear()
            try:
                await self._round(name, spec)
            except Exception:
                log.exception("route %s: active health check round failed", name)
            with contextlib.suppress(TimeoutError):  # the interval, or until new peers want a check
                await asyncio.wait_for(wake.wait(), max(0.0, spec.interval - (loop.time() - started)))

    async def _round(self, name: str, spec: Any) -> None:
        route = self.proxy.table.routes.get(name)
        if route is None or route.lb is None:
            return
        peers = route.lb.peers
        tls = route.upstream_tls
        results = await asyncio.gather(*(probe(spec, peer, tls) for peer in peers), return_exceptions=True)
        route = self.proxy.table.routes.get(name)  # the table may have changed during the probes
        if route is None or route.lb is None:
            return
        now = self.proxy.loop.time()
        for peer, result in zip(peers, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # (cancelled: the check is ending)
                log.error("route %s: health check of %s:%d failed", name, peer.address, peer.port, exc_info=result)
                result = (False, f"check failed: {type(result).__name__}: {result}")
            passed, detail = result
            change = route.lb.health(peer, passed, now, rise=spec.rise, fall=spec.fall)
            if change is not None:
                balancing.health_event(self.proxy, route, change, detail)


async def probe(spec: Any, peer: Peer, tls: UpstreamTLS | None = None) -> tuple[bool, str]:
    """One check of `peer` as `spec` (an ActiveHealthCheck) says, over TLS when `tls` is given: (passed, what was
    seen)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(spec.timeout):
            if tls is None:
                reader, writer = await asyncio.open_connection(peer.address, peer.port)
            else:
                reader, writer = await asyncio.open_connection(
                    peer.address,
                    peer.port,
                    ssl=client_context(tls),
                    server_hostname=server_name(tls, peer.address),
                )
            if spec.type == "tcp":
                return True, "connected"
            request = (
                f"GET {spec.path} HTTP/1.1\r\nHost: {peer.address}:{peer.port}\r\n"
                "User-Agent: jishi-gateway-health-check\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("latin-1"))
            line = await reader.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return False, f"not an HTTP response: {line[:60]!r}"
        status = int(parts[1])
        low, high = spec.expect_status
        if low <= status <= high:
            return True, f"status {status}"
        return False, f"{spec.path} answered {status}, expected {low}-{high}"
    except TimeoutError:
        return False, f"no answer within {spec.timeout:g} s"
    except OSError as exc:  # (ssl.SSLError too: a certificate that does not verify)
        return False, f"connect failed: {exc.strerror or exc}"
    except Exception as exc:
        log.exception("health check of %s:%d failed unexpectedly", peer.address, peer.port)
        return False, f"check failed: {type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
