"""TLS termination: the server-side `ssl.SSLContext` the gateway listens with, choosing a certificate by SNI.

    ctx = server_context("site.pem", "site.key", sni=[(["api.example.com"], "api.pem", "api.key"),
                                                      (["*.shop.example"], "shop.pem", "shop.key")])
    await proxy.start("0.0.0.0", 443, ssl=ctx)

The default certificate answers clients that send no server name, or one no entry matches. A server name is
matched exactly (case-insensitively) first, then against `*.suffix` wildcards, longest suffix first (a wildcard
covers one label: `*.shop.example` matches `a.shop.example`, not `shop.example` or `a.b.shop.example`).
TLS 1.2 is the minimum; ALPN offers http/1.1 only (the gateway speaks HTTP/1.1). Requests that arrive over TLS
are forwarded with `X-Forwarded-Proto: https`.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path

from jishi.errors import ConfigError

__all__ = ["SniEntry", "server_context"]

SniEntry = tuple[Sequence[str], str | Path, str | Path]  # server names, certificate file, key file


def _context(cert: str | Path, key: str | Path, field: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    for path, what in ((cert, "certificate"), (key, "key")):
        if not Path(path).is_file():
            raise ConfigError(f"TLS {what} file {str(path)!r} does not exist", field=field)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {str(cert)!r} with key {str(key)!r}: {exc}",
            field=field,
            fix="give a PEM certificate (chain) and its unencrypted PEM private key",
        ) from exc
    return ctx


def server_context(cert: str | Path, key: str | Path, sni: Iterable[SniEntry] = ()) -> ssl.SSLContext:
    """A server context with the default certificate `cert`/`key` and one more per `sni` entry."""
    default = _context(cert, key, "gateway.tls")
    exact: dict[str, ssl.SSLContext] = {}
    wildcard: list[tuple[str, ssl.SSLContext]] = []  # (".suffix", context), longest suffix first
    for i, (names, entry_cert, entry_key) in enumerate(sni):
        ctx = _context(entry_cert, entry_key, f"gateway.tls.sni[{i}]")
        for name in names:
            name = name.strip().lower().rstrip(".")
            if name.startswith("*."):
                wildcard.append((name[1:], ctx))
            else:
                exact[name] = ctx
    wildcard.sort(key=lambda item: -len(item[0]))
    if not exact and not wildcard:
        return default

    def choose(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if not server_name:
            return
        name = server_name.lower().rstrip(".")
        ctx = exact.get(name)
        if ctx is None:
            for suffix, candidate in wildcard:
                if name.endswith(suffix) and "." not in name[: -len(suffix)]:
                    ctx = candidate
                    break
        if ctx is not None:
            sock.context = ctx

    default.sni_callback = choose
    return default
