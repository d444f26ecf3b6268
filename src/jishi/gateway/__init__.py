"""The gateway (data plane): an HTTP/1.1 reverse proxy on uvloop + httptools that follows the control plane.

    serve(control_plane, listen, state_dir, workers=1, access_log=None)    the process (blocking)
    Proxy(table)                                                           the proxy alone, fed a RoutingTable
    Follower(control_plane, proxy, state_dir, gateway_id=..., url=...)    keeps a proxy's table current

Modules: `downstream` (client connections), `failover` (carrying out `jishi.core.retry`), `upstream`
(instance connections, pool), `exchange` (per-request state, header rules), `proxy` (listener, housekeeping),
`follower` + `view` + `snapshot` (control plane → routing table, last-known-good file), `accesslog`,
`responses`, `main`.
"""

from jishi.gateway.accesslog import AccessLog
from jishi.gateway.follower import Follower
from jishi.gateway.main import run, serve
from jishi.gateway.proxy import Proxy
from jishi.gateway.view import RegistryView

__all__ = ["AccessLog", "Follower", "Proxy", "RegistryView", "run", "serve"]
