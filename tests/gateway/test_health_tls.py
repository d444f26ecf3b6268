"""Active health checks of routes with upstream_tls: probes speak TLS like the route's requests, and a probe that
fails unexpectedly is a failed check, not an aborted round."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_upstream_tls import self_signed

from jishi.core.balancer import Peer, PeerSpec
from jishi.gateway import health
from jishi.registry.policies import ActiveHealthCheck, UpstreamTLS

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """A certificate for the instance and an unrelated one."""
    folder = tmp_path_factory.mktemp("health-certs")
    return {label: self_signed(folder, label, "IP:127.0.0.1") for label in ("instance", "other")}


@pytest.fixture
async def tls_peer(certs: dict[str, tuple[Path, Path]]) -> AsyncIterator[Peer]:
    """An HTTPS instance on 127.0.0.1 answering 200 to every request, as a balancer peer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*certs["instance"])

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    yield Peer(PeerSpec(key="tls-0", address="127.0.0.1", port=port))
    server.close()


async def test_probe_of_a_tls_route_speaks_tls(tls_peer: Peer, certs: dict[str, tuple[Path, Path]]) -> None:
    """With the route's upstream_tls the probe passes; plain HTTP or an untrusted certificate fails it."""
    check = ActiveHealthCheck(path="/healthz", timeout=2)
    ok = await health.probe(check, tls_peer, UpstreamTLS(ca=str(certs["instance"][0])))
    assert ok == (True, "status 200")
    plain = await health.probe(check, tls_peer)
    assert plain[0] is False
    untrusted = await health.probe(check, tls_peer, UpstreamTLS(ca=str(certs["other"][0])))
    assert untrusted[0] is False and "connect failed" in untrusted[1]


async def test_unexpected_probe_failure_is_a_failed_check(
    tls_peer: Peer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe that raises something unexpected returns a failed check (logged) instead of raising."""

    def broken(spec: UpstreamTLS) -> ssl.SSLContext:
        raise ValueError("unusable TLS settings")

    monkeypatch.setattr(health, "client_context", broken)
    passed, detail = await health.probe(ActiveHealthCheck(timeout=2), tls_peer, UpstreamTLS())
    assert passed is False and "unusable TLS settings" in detail
    assert any(rec.exc_info for rec in caplog.records)
