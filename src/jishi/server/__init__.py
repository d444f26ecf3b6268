"""`jishi server`: the control plane — the state store behind an HTTP JSON API with watch streams.

`create_app(registry)` is the ASGI app; `ControlPlaneServer` runs it with the deregistration reaper;
`serve(listen, data_dir)` is the blocking entry point (also `python -m jishi.server`).
"""

from jishi.server.app import create_app
from jishi.server.main import ControlPlaneServer, run, serve
from jishi.server.watch import WatchStreams

__all__ = ["ControlPlaneServer", "WatchStreams", "create_app", "run", "serve"]
