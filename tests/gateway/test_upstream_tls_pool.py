"""Pooled instance connections under `upstream_tls`: a connection made with one route's TLS settings (its client
certificate) carries only requests of routes with equal settings, before and after the settings change.
Certificates from the openssl CLI, real sockets on 127.0.0.1."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route
from test_upstream_tls import TLSBackend, self_signed

from jishi.registry.policies import UpstreamTLS

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("upstream-pool-certs")
    return {
        "instance": self_signed(folder, "instance", "IP:127.0.0.1"),
        "admin": self_signed(folder, "admin", "DNS:admin.gateway.test"),
        "public": self_signed(folder, "public", "DNS:public.gateway.test"),
    }


@pytest.fixture
async def backend(certs: dict[str, tuple[Path, Path]]) -> AsyncIterator[TLSBackend]:
    """A TLS instance that requires a client certificate, trusting both the admin and the public one."""
    b = TLSBackend(*certs["instance"], client_ca=certs["admin"][0])
    b.ctx.load_verify_locations(certs["public"][0])
    b.ctx.verify_mode = ssl.CERT_REQUIRED
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


def identity(certs: dict[str, tuple[Path, Path]], who: str) -> UpstreamTLS:
    """TLS settings that trust the instance and present `who`'s client certificate."""
    return UpstreamTLS(ca=str(certs["instance"][0]), cert=str(certs[who][0]), key=str(certs[who][1]))


async def test_a_route_never_reuses_a_connection_made_with_another_routes_client_certificate(
    gateway: GatewayUnderTest, backend: TLSBackend, certs: dict[str, tuple[Path, Path]]
) -> None:
    """Two routes to one instance with different client certificates: a request on the public route reaches the
    instance as `public`, never over a pooled connection authenticated as `admin`."""
    gateway.set(
        [
            simple_route("admin", "/admin", service="svc", upstream_tls=identity(certs, "admin")),
            simple_route("public", "/public", service="svc", upstream_tls=identity(certs, "public")),
        ],
        [backend.instance()],
    )
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.get("/admin/x")).text == "tls ok, client admin"
        assert (await client.get("/public/x")).text == "tls ok, client public"
        assert (await client.get("/admin/y")).text == "tls ok, client admin"
    assert backend.handshakes == 2  # one connection per identity, each reused


async def test_changed_tls_settings_do_not_reuse_the_old_connections(
    gateway: GatewayUnderTest, backend: TLSBackend, certs: dict[str, tuple[Path, Path]]
) -> None:
    """A route whose client certificate changes reaches the instance with the new one at once, not over a
    connection kept from before the change; routes with equal settings share connections."""
    gateway.set([simple_route(upstream_tls=identity(certs, "admin"))], [backend.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.get("/a")).text == "tls ok, client admin"
        gateway.set([simple_route(upstream_tls=identity(certs, "public"))], [backend.instance()])
        assert (await client.get("/b")).text == "tls ok, client public"
        gateway.set([simple_route(upstream_tls=identity(certs, "public"))], [backend.instance()])
        assert (await client.get("/c")).text == "tls ok, client public"
    assert backend.handshakes == 2
