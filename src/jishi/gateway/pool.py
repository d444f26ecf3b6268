"""The keep-alive pool of instance connections (`jishi.gateway.upstream.UpstreamConnection`).

After a response that leaves its connection reusable (`jishi.gateway.relay.done`), the connection goes back here:
a bounded stack of idle connections per (address, port) — per (address, port, settings) for one made under a
route's `upstream_tls` settings, so a connection is reused only by a route with equal settings (the same client
certificate, CA, verification and server name) — newest first, closed after `idle_timeout`, dropped at
once when the instance closes them (or sends anything while idle). The pool also knows the connections that are
awaiting or reading a response (`busy`), and fails those past their read timeout or their request's total
timeout (`check_timeouts`, called by the proxy's housekeeping every ~50 ms rather than a timer per request).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from jishi.gateway.upstream import UpstreamConnection
from jishi.gateway.upstream_tls import client_context, server_name
from jishi.gateway.writes import WriteBatch

if TYPE_CHECKING:
    from jishi.gateway.upstream import PoolKey
    from jishi.registry.policies import UpstreamTLS

__all__ = ["Pool"]


class Pool:
    """Idle keep-alive connections per (address, port[, TLS settings]), bounded and aged; see the module doc."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_idle: int = 256,
        idle_timeout: float = 30.0,
        writes: WriteBatch | None = None,
    ) -> None:
        self.loop = loop
        self.writes = writes if writes is not None else WriteBatch(loop)  # the loop turn's writes
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: dict[PoolKey, list[UpstreamConnection]] = {}
        self.busy: set[UpstreamConnection] = set()  # awaiting or reading a response (checked for read timeouts)

    def acquire(self, addr: tuple[str, int], tls: UpstreamTLS | None = None) -> UpstreamConnection | None:
        """An idle connection to `addr` that is still open, made under TLS settings equal to `tls`, or None."""
        stack = self._idle.get(addr if tls is None else (*addr, tls))
        while stack:
            conn = stack.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    def release(self, conn: UpstreamConnection, now: float | None = None) -> None:
        """Keep `conn` for reuse (or close it if the pool for its address is full); `now`: the loop time."""
        if conn.closed:
            return
        stack = self._idle.setdefault(conn.key, [])
        if len(stack) >= self.max_idle:
            conn.abort()
            return
        conn.idle_since = self.loop.time() if now is None else now
        stack.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """`conn` closed while idle: drop it from its stack."""
        stack = self._idle.get(conn.key)
        if stack and conn in stack:
            stack.remove(conn)

    async def open(self, addr: tuple[str, int], connect_timeout: float) -> UpstreamConnection:
        """A new connection to `addr`; OSError or TimeoutError if it cannot be made within `connect_timeout`."""
        async with asyncio.timeout(connect_timeout):
            _, proto = await self.loop.create_connection(lambda: UpstreamConnection(self, addr), addr[0], addr[1])
        return proto

    async def open_tls(self, addr: tuple[str, int], connect_timeout: float, spec: UpstreamTLS) -> UpstreamConnection:
        """`open` over TLS (`jishi.gateway.upstream_tls`): the handshake is part of the connect timeout; a
        certificate that does not verify is a connect failure (ssl.SSLError is an OSError)."""
        ctx = client_context(spec)
        key = (*addr, spec)
        async with asyncio.timeout(connect_timeout):
            _, proto = await self.loop.create_connection(
                lambda: UpstreamConnection(self, addr, key),
                addr[0],
                addr[1],
                ssl=ctx,
                server_hostname=server_name(spec, addr[0]),
            )
        return proto

    def sweep(self) -> int:
        """Close connections idle longer than `idle_timeout`; returns how many were closed."""
        cutoff = self.loop.time() - self.idle_timeout
        closed = 0
        for key, stack in list(self._idle.items()):
            keep = [c for c in stack if not c.closed and c.idle_since > cutoff]
            for c in stack:
                if c not in keep and not c.closed:
                    c.abort()
                    closed += 1
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return closed

    def check_timeouts(self) -> int:
        """Fail every busy connection that read nothing for its read timeout, or whose request's total timeout
        passed; returns how many. Time the gateway itself holds reading back (the client's write buffer is full:
        `ClientConnection.pause_writing`) is not the instance's silence: such a connection's read timer restarts
        here, and again when reading resumes (`resume_writing`). Nor is the time a request body takes to arrive:
        the read timeout counts from (at most one check before) the body's end."""
        now = self.loop.time()
        late = [c for c in self.busy if now - c.last_read >= c.timeout or 0.0 < c.deadline <= now]
        failed = 0
        for conn in late:
            owner = conn.owner
            if (
                owner is not None
                and owner.active is not None
                and owner.active.conn is conn
                and (owner.write_paused or not owner.active.req_done)
                and not 0.0 < conn.deadline <= now
            ):
                # Held back by the gateway for a slow client, or the request body is still arriving (its own
                # pace is the client's `body_timeout`): the wait for the answer starts when it is all sent.
                conn.last_read = now
                continue
            conn.timed_out(now)
            failed += 1
        return failed

    def idle_count(self, key: PoolKey | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(s) for s in self._idle.values())

    def close(self) -> None:
        for stack in self._idle.values():
            for conn in stack:
                conn.abort()
        self._idle.clear()
