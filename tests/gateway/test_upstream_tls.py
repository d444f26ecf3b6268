"""TLS from the gateway to the instances: verified against a CA file, with a client certificate (mutual TLS),
refused when the instance's certificate does not verify, and `upstream_tls` paths in jishi.yaml."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.config import load_config
from jishi.errors import ConfigError
from jishi.registry.model import Health, Instance
from jishi.registry.policies import UpstreamTLS

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def self_signed(folder: Path, label: str, san: str) -> tuple[Path, Path]:
    """A self-signed EC certificate with `san` as subjectAltName (it is its own CA)."""
    cert, key = folder / f"{label}.pem", folder / f"{label}.key"
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    argv += ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={label}", "-addext"]
    argv += [f"subjectAltName={san}"]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("upstream-certs")
    return {
        "instance": self_signed(folder, "instance", "IP:127.0.0.1"),
        "other": self_signed(folder, "other", "IP:127.0.0.1"),
        "client": self_signed(folder, "client", "DNS:gateway.test"),
    }


class TLSBackend:
    """An HTTPS instance on 127.0.0.1 that answers every request with who the client certificate says it is."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        if client_ca is not None:
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.handshakes = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        peer = writer.get_extra_info("peercert") or {}
        who = dict(x[0] for x in peer.get("subject", ())).get("commonName", "-")
        body = f"tls ok, client {who}".encode()
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def instance(self) -> Instance:
        return Instance(id="tls-0", service="svc", port=self.port, health=Health.PASSING)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def backend(certs: dict[str, tuple[Path, Path]]) -> AsyncIterator[TLSBackend]:
    b = TLSBackend(*certs["instance"], client_ca=certs["client"][0])
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def test_tls_to_the_instance_verified_with_a_client_certificate(
    gateway: GatewayUnderTest, backend: TLSBackend, certs: dict[str, tuple[Path, Path]]
) -> None:
    """With `upstream_tls` (CA file + client certificate) the gateway speaks TLS to the instance, which sees the
    gateway's certificate; connections are pooled (one handshake for several requests)."""
    client_cert, client_key = certs["client"]
    tls = UpstreamTLS(ca=str(certs["instance"][0]), cert=str(client_cert), key=str(client_key))
    gateway.set([simple_route(upstream_tls=tls)], [backend.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answers = [await client.get("/hello") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].text == "tls ok, client client"
    assert backend.handshakes == 1


async def test_an_instance_certificate_that_does_not_verify_is_a_connect_failure(
    gateway: GatewayUnderTest, backend: TLSBackend, certs: dict[str, tuple[Path, Path]]
) -> None:
    """Trusting another CA, the gateway refuses the instance's certificate: 502 JSON naming the failure; with
    `verify: false` (testing only) the same instance is reached."""
    client_cert, client_key = certs["client"]
    wrong = UpstreamTLS(ca=str(certs["other"][0]), cert=str(client_cert), key=str(client_key))
    gateway.set([simple_route(upstream_tls=wrong, retries=0)], [backend.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        refused = await client.get("/hello")
        assert refused.status_code == 502
        assert "CERTIFICATE_VERIFY_FAILED" in refused.json()["error"]["message"]
        unchecked = UpstreamTLS(verify=False, cert=str(client_cert), key=str(client_key))
        gateway.set([simple_route(upstream_tls=unchecked)], [backend.instance()])
        assert (await client.get("/hello")).status_code == 200


async def test_plain_http_to_a_tls_instance_fails_cleanly(gateway: GatewayUnderTest, backend: TLSBackend) -> None:
    """Without `upstream_tls` a TLS-only instance cannot be understood: the client gets a 502 JSON error, not a
    hang or a garbled answer."""
    gateway.set([simple_route(retries=0, read_timeout=2.0)], [backend.instance()])
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        answer = await client.get("/hello")
    assert answer.status_code in (502, 504) and answer.json()["error"]["code"].startswith("upstream")


def test_upstream_tls_paths_resolve_against_the_file(tmp_path: Path) -> None:
    """`upstream_tls` in jishi.yaml (on a service's policies too): relative files become absolute; a certificate
    without its key is refused with the field named."""
    (tmp_path / "jishi.yaml").write_text(
        "services:\n  a:\n    command: sleep 100\n    policies:\n      upstream_tls: {ca: certs/ca.pem}\n"
        "routes:\n  a: {prefix: /a, service: a}\n"
    )
    (route,) = load_config(tmp_path / "jishi.yaml").routes
    assert route.upstream_tls is not None and route.upstream_tls.ca == str(tmp_path / "certs" / "ca.pem")
    (tmp_path / "bad.yaml").write_text(
        "services:\n  a: {command: sleep 100}\nroutes:\n  a:\n    prefix: /a\n    service: a\n"
        "    upstream_tls: {cert: c.pem}\n"
    )
    with pytest.raises(ConfigError, match=r"bad.yaml:7: routes.a.upstream_tls.*needs both"):
        load_config(tmp_path / "bad.yaml")
