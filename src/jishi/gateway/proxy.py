"""The proxy server: listens, owns the client connections, the upstream pool and the routing table.

`Proxy` is the data plane without the control plane: give it a `RoutingTable` (`set_table`) and it serves.
The follower (`jishi.gateway.follower`) swaps tables in as the registry changes. Background work runs in one
task the proxy owns: read timeouts, failure marks and outlier ejections every 50 ms, and every 0.5 s sweeping
idle connections and flushing the access log, answering 408 to request heads older than `header_timeout` and
to request bodies stalled for longer than `body_timeout`, and ending lingering closes. Connection attempts are
tasks it tracks and cancels on stop; active health checks (`jishi.gateway.health`) are one task per route that
has them, cancelled when the route changes and on stop.

Limits on what a client may send (each refusal is a JSON error, after which the connection closes):
`max_head_size` (request line and headers, 32 KiB → 431), `max_body_size` (100 MiB → 413: a larger
Content-Length at once, a chunked body once it grows past it), `header_timeout` (10 s from the connection's
start for its first request, from the first byte of a head for later ones → 408; between requests the
`keepalive_timeout` applies), `body_timeout` (60 s: the longest wait between two reads of a request body that
is still arriving → 408, the instance connection for it dropped; checked with the header timeout every 0.5 s,
so a cut comes up to a second late, never early). On the answer's side (`jishi.gateway.client_timeouts`, also
every 0.5 s): `send_timeout` (60 s: a client taking no response byte for longer is cut off) and
`request_timeout` (off by default: the longest a whole exchange may take → 408, 504 or a cut-off). Ambiguous
framing is refused with 400 (`jishi.gateway.downstream`). jishi.yaml sets them under `gateway.limits`
(`jishi.config.GatewayLimits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl as _ssl
from collections import deque
from typing import TYPE_CHECKING

from jishi.core.routing import RoutingTable
from jishi.gateway import balancing, client_timeouts, dispatch, policy
from jishi.gateway.downstream import ClientConnection
from jishi.gateway.health import HealthChecks
from jishi.gateway.pool import Pool
from jishi.gateway.upstream import UpstreamConnection
from jishi.gateway.writes import WriteBatch
from jishi.registry.model import EventRecord

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.core.routing import RouteEntry
    from jishi.gateway.accesslog import AccessLog
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.stats import Stats
    from jishi.gateway.tunnel import Tunnel

__all__ = ["Proxy"]

log = logging.getLogger(__name__)


class Proxy:
    """An HTTP/1.1 reverse proxy on the running loop; see the module doc."""

    def __init__(
        self,
        table: RoutingTable | None = None,
        *,
        access_log: AccessLog | None = None,
        keepalive_timeout: float = 75.0,
        upstream_idle_timeout: float = 30.0,
        upstream_max_idle: int = 256,
        max_head_size: int = 32 * 1024,
        max_body_size: int = 100 * 1024 * 1024,
        header_timeout: float = 10.0,
        body_timeout: float = 60.0,
        send_timeout: float = 60.0,
        request_timeout: float = 0.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.table = RoutingTable()
        self.access_log = access_log
        self.workers = 1  # gateway processes sharing the port (a Redis limit's local fallback splits by it)
        self.stats: Stats | None = None  # request metrics (`jishi.gateway.stats`); None: not recorded
        # What happened in this gateway (ejections, breaker changes) since the last report to the control plane.
        self.events: deque[EventRecord] = deque(maxlen=1000)
        self.keepalive_timeout = keepalive_timeout
        self.max_head_size = max_head_size  # a larger request head is refused with 431
        self.max_body_size = max_body_size  # a larger request body is refused with 413
        self.header_timeout = header_timeout  # a request head incomplete for longer is answered 408
        self.body_timeout = body_timeout  # a request body with no byte for longer is answered 408
        self.send_timeout = send_timeout  # a client taking no response byte for longer is cut off
        self.request_timeout = request_timeout  # an exchange taking longer is ended (0: never; `client_timeouts`)
        # Every connection's writes of a loop turn are made together at its end (`jishi.gateway.writes`).
        self.writes = WriteBatch(self.loop)
        self.pool = Pool(self.loop, max_idle=upstream_max_idle, idle_timeout=upstream_idle_timeout, writes=self.writes)
        self.clients: set[ClientConnection] = set()
        self.tunnels: set[Tunnel] = set()  # upgraded connections (WebSocket), piping bytes both ways
        self.stopping = False
        self._connects: set[asyncio.Task[UpstreamConnection]] = set()
        self.rng = random.Random()  # load-balancing draws and retry backoff jitter
        self.groups: list[RouteEntry] = []  # routes balanced by a peer group (`jishi.gateway.balancing`)
        self.health = HealthChecks(self)  # the active health checks of the routes that have them
        self._server: asyncio.Server | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        if table is not None:
            self.set_table(table)

    def set_table(self, table: RoutingTable) -> None:
        """Route every request from now on by `table` (route policies and balancing state of the previous table
        kept where unchanged)."""
        policy.attach(table, self.table, self)
        balancing.attach(table, self.table, self)
        self.table = table
        self.health.follow(table)

    async def start(
        self, host: str = "127.0.0.1", port: int = 8080, *, reuse_port: bool = False, ssl: _ssl.SSLContext | None = None
    ) -> int:
        """Listen on host:port (port 0: any), over TLS with `ssl` (`jishi.gateway.tls.server_context`); returns
        the bound port."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        https = ssl is not None
        # A TLS handshake is part of the first request head: a silent client is cut after `header_timeout`.
        handshake_timeout = self.header_timeout if https else None
        self._server = await self.loop.create_server(
            lambda: ClientConnection(self, https),
            sock=sock,
            backlog=2048,
            ssl=ssl,
            ssl_handshake_timeout=handshake_timeout,
        )
        self._housekeeping = self.loop.create_task(self._housekeep())
        return int(sock.getsockname()[1])

    def connect(
        self, addr: tuple[str, int], timeout: float, client: ClientConnection, ex: Exchange, peer: Peer
    ) -> None:
        """Open a connection to `addr` for `ex` (over TLS when its route says so); `dispatch.connected(client, ...)`
        is called with the outcome."""
        route = ex.route
        tls = route.upstream_tls if route is not None else None
        if tls is None:
            task = self.loop.create_task(self.pool.open(addr, timeout))
        else:
            task = self.loop.create_task(self.pool.open_tls(addr, timeout, tls))
        self._connects.add(task)

        def done(t: asyncio.Task[UpstreamConnection]) -> None:
            self._connects.discard(t)
            if t.cancelled():
                return
            error = t.exception()
            dispatch.connected(client, ex, peer, None if error is not None else t.result(), error)

        task.add_done_callback(done)

    async def _housekeep(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(0.05)
            tick += 1
            try:
                self.pool.check_timeouts()
                if self.groups:
                    balancing.tick(self, self.loop.time())
                if tick % 10:
                    continue
                self.pool.sweep()
                now = self.loop.time()
                cutoff = now - self.keepalive_timeout
                for client in list(self.clients):
                    if not client_timeouts.check(client, now) and not client.close_if_slow(now):
                        client.close_if_idle(cutoff)
                if self.access_log is not None:
                    self.access_log.flush()
            except Exception:
                log.exception("gateway housekeeping failed")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in progress finish (up to `grace` seconds), then close everything."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + grace
        while self.clients and self.loop.time() < deadline:
            for client in list(self.clients):
                client.close_if_idle(float("inf"))
            await asyncio.sleep(0.02)
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.abort()
        for tunnel in list(self.tunnels):
            tunnel.abort()
        await self.health.stop()
        for task in list(self._connects):
            task.cancel()
        if self._connects:
            await asyncio.gather(*self._connects, return_exceptions=True)
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        self.pool.close()
        if self._server is not None:
            await self._server.wait_closed()
        await policy.close(self.table)
        if self.access_log is not None:
            self.access_log.close()
