"""A malformed request pipelined behind valid ones is refused only after every request before it is answered:
real sockets on 127.0.0.1."""

from __future__ import annotations

from gateway_harness import GatewayUnderTest, simple_route, start_backend
from raw_instance import exchange

from jishi.gateway.proxy import Proxy
from jishi.testing import ProcessGroup


def statuses_of(response: bytes) -> list[int]:
    """The statuses of the Content-Length framed responses in `response`, in order."""
    statuses = []
    rest = response
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        statuses.append(int(head.split(b" ", 2)[1]))
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        rest = rest[length:]
    return statuses


async def test_a_refused_pipelined_request_waits_for_every_request_before_it(procs: ProcessGroup) -> None:
    """Pipelined A, B (valid, proxied) and C (two Host headers): the client gets 200, 200, then 400."""
    proxy = Proxy()
    port = await proxy.start("127.0.0.1", 0)
    gw = GatewayUnderTest(proxy, port)
    gw.set([simple_route()], [start_backend(procs, "b0").instance()])
    try:
        response = await exchange(
            port,
            b"GET /whoami?a HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /whoami?b HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /whoami?c HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        )
    finally:
        await proxy.stop(grace=0.5)
    assert statuses_of(response) == [200, 200, 400], response
