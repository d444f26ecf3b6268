"""Protocol upgrades (WebSocket and any other `Upgrade:`): after a 101, both connections become a byte pipe.

A request with `Connection: upgrade` and an `Upgrade` header is forwarded with both headers kept (they are
hop-by-hop and dropped otherwise). The client connection stops parsing after that request; bytes the client
sent after its head are kept. When the instance answers 101, `switch` relays the 101 head (the instance's
headers, its `Upgrade` naming the protocol it switched to, and `Connection: Upgrade`) to the client, and both
transports get a `TunnelEnd` protocol: what one side reads the other writes, unchanged, until either side
closes. Flow control: a side whose write buffer is full stops the other side reading. A half-close is passed
on (EOF → write_eof), and the tunnel closes when both directions ended or either connection is lost.

Any other answer to an upgrade request is relayed as a normal response, after which the client connection
closes (the request stream cannot go on after an upgrade request that was not switched).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from jishi.gateway.responses import status_line

if TYPE_CHECKING:
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.proxy import Proxy
    from jishi.gateway.upstream import UpstreamConnection

__all__ = ["Tunnel", "TunnelEnd", "switch"]

log = logging.getLogger(__name__)


class TunnelEnd(asyncio.Protocol):
    """One side of a tunnel: bytes read here are written to `other`."""

    def __init__(self, tunnel: Tunnel, transport: asyncio.Transport) -> None:
        self.tunnel = tunnel
        self.transport = transport
        self.other: TunnelEnd | None = None
        self.eof = False  # this side sent EOF (its bytes are all passed on)
        self.lost = False

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is not None and not other.lost:
            other.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        other = self.other
        if other is None or other.lost or other.eof or not other.transport.can_write_eof():
            self.tunnel.close()
            return False
        other.transport.write_eof()  # half-close: the other direction goes on
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.tunnel.close()

    def pause_writing(self) -> None:
        if self.other is not None and not self.other.lost:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and not self.other.lost:
            self.other.transport.resume_reading()


class Tunnel:
    """A client connection and an instance connection piped to each other; owned by the proxy."""

    def __init__(self, proxy: Proxy, client: asyncio.Transport, upstream: asyncio.Transport) -> None:
        self.proxy = proxy
        self.client = TunnelEnd(self, client)
        self.upstream = TunnelEnd(self, upstream)
        self.client.other, self.upstream.other = self.upstream, self.client
        self.closed = False

    def close(self) -> None:
        """Close both sides (after what is buffered is written)."""
        if self.closed:
            return
        self.closed = True
        self.proxy.tunnels.discard(self)
        for end in (self.client, self.upstream):
            if not end.lost:
                end.transport.close()

    def abort(self) -> None:
        """Drop both sides now (the proxy is stopping)."""
        self.closed = True
        self.proxy.tunnels.discard(self)
        self.client.transport.abort()
        self.upstream.transport.abort()


def switch(client: ClientConnection, conn: UpstreamConnection, rest: bytes) -> None:
    """The instance answered 101 to the upgrade request on `conn`: relay the head, then pipe the two
    connections; `rest` is what the instance sent after its head."""
    ex = client.active
    assert ex is not None and ex.upgrade is not None
    ex.status = 101
    ex.resp_started = True
    ex.conn = None
    conn.detach()
    conn.closed = True  # never pooled again
    out = client.out
    out.append(status_line(101))
    lines = conn.head_lines
    out += lines
    if any(name.lower() == b"upgrade" for name in lines[::4]):
        out.append(b"Connection: Upgrade\r\n\r\n")
    else:  # a 101 must name the protocol; one that does not gets the client's request for it
        out += (b"Connection: Upgrade\r\nUpgrade: ", ex.upgrade, b"\r\n\r\n")
    if rest:
        out.append(rest)
    client.write_now()  # before the transport is handed to the tunnel, which writes to it directly
    ex.resp_close = True
    client.closed = True
    client.finish(ex)  # logs the exchange; the client connection is done as an HTTP connection
    proxy = client.proxy
    proxy.clients.discard(client)
    down, up = client.transport, conn.transport
    assert down is not None and up is not None
    tunnel = Tunnel(proxy, down, up)
    proxy.tunnels.add(tunnel)
    down.set_protocol(tunnel.client)
    up.set_protocol(tunnel.upstream)
    pending = client.upgrade_rest
    client.upgrade_rest = b""
    if pending:
        up.write(pending)
    if client.write_paused:
        up.pause_reading()
    else:
        up.resume_reading()
    down.resume_reading()
    log.debug("client %s: switched to %r with %s:%d", client.client_ip.decode(), ex.upgrade, *conn.addr)
