"""The client side's send and request timeouts, applied by the proxy's housekeeping every 0.5 s.

    check(client, now) -> bool     cut the connection if its client stopped taking the response for the send
                                   timeout, or its request outlived the request timeout; True when it did

Send timeout (`Proxy.send_timeout`, 60 s; nginx's `send_timeout`): while response bytes wait in the client's
transport (its socket takes no more: the kernel's buffers are full) and none of them is taken for the send
timeout, the client is gone in all but name. Its connection is aborted (a graceful close would wait for the
stuck bytes forever), the exchange being answered is finished with the status already sent (499 if none was)
and its instance connection dropped, not pooled, with no verdict on the instance (the client was slow, not the
instance). The access log line gets `"outcome": "send_timeout"`.

Watching costs the hot path nothing but one attribute store at each `resume_writing` (`client.write_resumed`).
Each look at a connection whose transport holds bytes notes how many bytes wait for the client, in the
transport and in the kernel's send queue (SIOCOUTQ: the kernel's buffers are megabytes on a fast link, and a
client that reads steadily but slowly may take many seconds to make room for the transport's next write), as
`client.send_size`, and since when no progress was seen (`client.send_since`). Progress is fewer bytes waiting
than at the last look, or a resume (the buffer drained below its low-water mark) since then. Bytes that keep
growing (the gateway still adding below the high-water mark) are no progress, so a client that reads less than
the instance sends, and so little that what waits never shrinks between two looks for the whole send timeout,
is cut too.

Request timeout (`Proxy.request_timeout`, 0: none; Envoy's `request_timeout`): the longest an exchange may take
from its request head's first read to its response's last byte. When it passes the exchange is ended as Envoy
does: while the request is still being received, 408 `request_timeout` and the connection closes (Envoy's
`request_timeout` covers exactly this part); once the request is all received and no response head has been
sent, 504 `request_timeout` (the wait is then on the instance, as Envoy's route `timeout` answers 504) and the
connection stays open; after a response head was sent, the response is cut off and the connection closed. The
instance connection is dropped in each case, with no verdict on the instance. The access log line gets
`"outcome": "request_timeout"`.

Both are found up to 0.5 s late (the housekeeping's period), never early.
"""

from __future__ import annotations

import fcntl
import logging
import struct
import termios
from typing import TYPE_CHECKING

from jishi.gateway import closing

if TYPE_CHECKING:
    import asyncio

    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange

__all__ = ["check", "request_overdue", "send_stalled"]

log = logging.getLogger(__name__)

SEND_TIMEOUT = b"send_timeout"
REQUEST_TIMEOUT = b"request_timeout"


def check(client: ClientConnection, now: float) -> bool:
    """Apply the send and request timeouts to `client` at loop time `now`; True when its connection was cut."""
    if send_stalled(client, now):
        _send_timed_out(client, now)
        return True
    ex = request_overdue(client, now)
    if ex is not None:
        _request_timed_out(client, ex, now)
        return True
    return False


def send_stalled(client: ClientConnection, now: float) -> bool:
    """True when response bytes have waited in the client's transport with no progress for the send timeout."""
    transport = client.transport
    if transport is None:
        return False
    size = transport.get_write_buffer_size()
    if not size:
        client.send_since = 0.0
        return False
    size += _kernel_queued(transport)
    if not client.send_since or size < client.send_size or client.write_resumed:
        client.send_since, client.send_size, client.write_resumed = now, size, False
        return False
    client.send_size = size
    return now - client.send_since >= client.proxy.send_timeout


def _kernel_queued(transport: asyncio.Transport) -> int:
    """Bytes written to the socket that the peer has not taken yet (Linux's SIOCOUTQ; 0 where unknown)."""
    sock = transport.get_extra_info("socket")
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])
    except (AttributeError, OSError, ValueError):
        return 0


def request_overdue(client: ClientConnection, now: float) -> Exchange | None:
    """The exchange being answered (or read) that began longer than the request timeout ago, if any."""
    limit = client.proxy.request_timeout
    if not limit or client.closed:
        return None
    ex = client.active or client.parsing
    if ex is None or ex.finished or now - ex.t0 < limit:
        return None
    return ex


def _note(client: ClientConnection, ex: Exchange, outcome: bytes) -> None:
    """`ex`'s line says `outcome`, in the gateway's access log and in its route's own."""
    access_log = client.proxy.access_log
    if access_log is not None:
        access_log.note(ex, outcome)
    if ex.policy is not None and ex.policy.c.access_log is not None:
        ex.policy.c.access_log.note(ex, outcome)


def _drop_instance(ex: Exchange) -> None:
    conn = ex.conn
    if conn is not None:
        # Aborted while still `ex.conn`: `UpstreamConnection.detach` then ends the try with no verdict on the
        # instance (its in-flight count and the retry budget given back); then forgotten, not pooled.
        conn.abort()
        ex.conn = None


def _send_timed_out(client: ClientConnection, now: float) -> None:
    timeout = client.proxy.send_timeout
    ip = client.client_ip.decode()
    log.info("client %s: took no response byte for %g s (the send timeout); closing", ip, timeout)
    ex = client.active
    client.closed = True  # (first: the instance connection's abort then ends any hedges, `finish` closes nothing)
    client.queue.clear()
    if ex is not None and not ex.finished:
        _drop_instance(ex)
        if not ex.resp_started:
            ex.status = 499  # nothing of its response reached the client
        ex.resp_close = True
        _note(client, ex, SEND_TIMEOUT)
        client.finish(ex, now)
    transport = client.transport
    if transport is not None:
        transport.abort()


def _request_timed_out(client: ClientConnection, ex: Exchange, now: float) -> None:
    timeout = client.proxy.request_timeout
    ip = client.client_ip.decode()
    _note(client, ex, REQUEST_TIMEOUT)
    if ex.resp_started:
        log.info("client %s: response not complete within the request timeout of %g s; cut off", ip, timeout)
        _drop_instance(ex)
        ex.resp_close = True
        client.finish(ex, now)
        return
    if ex is client.parsing:  # its head or body is still arriving
        log.info("client %s: request not received within the request timeout of %g s", ip, timeout)
        message = f"the request was not received within {timeout:g} s (the request timeout)"
        closing.refuse(client, 408, "request_timeout", message)
        return
    log.info("client %s: no response within the request timeout of %g s", ip, timeout)
    _drop_instance(ex)
    client.error(ex, 504, "request_timeout", f"no response within {timeout:g} s (the gateway's request timeout)")
