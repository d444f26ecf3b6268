"""TLS from the gateway to the instances: the client-side SSLContext of a route's `upstream_tls` section.

A context is made once per distinct section (the sections are frozen records, so they key a cache) and shared
by every connection of every route that names the same one. `verify: false` turns off the certificate and name
checks (for testing only; it is logged once). The name checked, and sent as SNI, is `server_name` or else the
instance's address, so an instance registered by IP needs that IP in its certificate's subjectAltName.
"""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jishi.registry.policies import UpstreamTLS

__all__ = ["client_context", "server_name"]

log = logging.getLogger(__name__)

_contexts: dict[UpstreamTLS, ssl.SSLContext] = {}


def client_context(spec: UpstreamTLS) -> ssl.SSLContext:
    """The SSLContext for connections made under `spec` (cached); OSError/ssl.SSLError if a file is unusable."""
    ctx = _contexts.get(spec)
    if ctx is None:
        ctx = ssl.create_default_context(cafile=spec.ca)
        if not spec.verify:
            log.warning("upstream TLS without verification: instances' certificates are not checked")
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if spec.cert is not None and spec.key is not None:
            ctx.load_cert_chain(spec.cert, spec.key)
        _contexts[spec] = ctx
    return ctx


def server_name(spec: UpstreamTLS, address: str) -> str:
    """The name sent as SNI and checked in the instance's certificate."""
    return spec.server_name or address
