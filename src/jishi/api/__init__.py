"""The control plane's HTTP client: `HttpControlPlane` implements `jishi.registry.ControlPlane` over HTTP.

`jishi.api.wire` is the wire format (request/reply models, watch-stream lines, error bodies) that the server
(`jishi.server`) and this client share.
"""

from jishi.api.client import HttpControlPlane

__all__ = ["HttpControlPlane"]
