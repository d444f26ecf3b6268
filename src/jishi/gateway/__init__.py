"""The gateway (data plane): an HTTP/1.1 reverse proxy on uvloop + httptools that follows the control plane.

    serve(control_plane, listen, state_dir, workers=1, access_log=None, tls=None)    the process (blocking)
    Proxy(table)                                                           the proxy alone, fed a RoutingTable
    Follower(control_plane, proxy, state_dir, gateway_id=..., url=...)    keeps a proxy's table current
    server_context(cert, key, sni=[(hosts, cert, key), ...])              an SSLContext for `Proxy.start(ssl=...)`

Modules, along a request: `downstream` (client connections) + `downstream_parse` (request parsing), `exchange`
(per-request state), `headers` (which headers are forwarded; the heads' bytes), `dispatch` (route, peer, connection,
send), `upstream` (instance connections) + `pool` (keep-alive), `relay` (the response back to the client),
`failover` (carrying out `jishi.core.retry`), `accesslog`, `responses` (the gateway's own JSON errors), `limits`
(refused framing, size and time limits), `tunnel` (Upgrade/WebSocket byte pipes); around them: `proxy` (listener,
housekeeping), `tls` (certificates, SNI), `follower` + `view` + `snapshot` (control plane → routing table,
last-known-good file), `main`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jishi.gateway.accesslog import AccessLog
    from jishi.gateway.follower import Follower
    from jishi.gateway.main import run, serve
    from jishi.gateway.proxy import Proxy
    from jishi.gateway.tls import server_context
    from jishi.gateway.view import RegistryView

__all__ = ["AccessLog", "Follower", "Proxy", "RegistryView", "run", "serve", "server_context"]

# Imported on first use, so a process that needs one small part (the control plane reads `stats` and `admin`)
# does not load the whole proxy.
_WHERE = {
    "AccessLog": "accesslog",
    "Follower": "follower",
    "run": "main",
    "serve": "main",
    "Proxy": "proxy",
    "server_context": "tls",
    "RegistryView": "view",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'jishi.gateway' has no attribute {name!r}")
    return getattr(importlib.import_module(f"jishi.gateway.{module}"), name)
