"""The peer proxies of the gateway benchmark: nginx and HAProxy, configured like the jishi gateway.

Each runs ONE worker (nginx: `worker_processes 1`; HAProxy: `nbthread 1`), keeps idle connections to the
instances (nginx `keepalive 128`, HAProxy `http-reuse always`), adds X-Forwarded-For / X-Forwarded-Proto /
X-Real-IP like the gateway does, logs nothing, and balances round-robin over the same two instances.

`ensure_tools()` installs what is missing from Debian packages (nginx-light, haproxy, wrk, util-linux for
`taskset`); it needs root and apt-get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["TOOLS", "ensure_tools", "haproxy_argv", "nginx_argv"]

# command → the Debian package that provides it
TOOLS = {"nginx": "nginx-light", "haproxy": "haproxy", "wrk": "wrk", "taskset": "util-linux"}

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    upstream backends {{
        server 127.0.0.1:{b0};
        server 127.0.0.1:{b1};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""

HAPROXY_CONF = """
global
    nbthread 1
    maxconn 4096
    pidfile {tmp}/haproxy.pid

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
    option http-keep-alive
    option forwardfor
    http-reuse always

frontend bench
    bind 127.0.0.1:{port}
    default_backend hello

backend hello
    balance roundrobin
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto http
    server hello0 127.0.0.1:{b0}
    server hello1 127.0.0.1:{b1}
"""


def ensure_tools(tools: dict[str, str] = TOOLS) -> None:
    """Install the Debian package of every command in `tools` that is not on PATH."""
    missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"the benchmark needs {', '.join(missing)}: run `apt-get install -y {' '.join(missing)}`")
    print(f"installing {', '.join(missing)} from Debian packages …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def nginx_argv(tmp: Path, port: int, backends: list[int]) -> list[str]:
    """Write nginx's configuration under `tmp`; the command that runs it in the foreground."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, b0=backends[0], b1=backends[1], port=port))
    return ["nginx", "-c", str(conf), "-p", str(tmp)]


def haproxy_argv(tmp: Path, port: int, backends: list[int]) -> list[str]:
    """Write HAProxy's configuration under `tmp`; the command that runs it in the foreground (`-db`)."""
    conf = tmp / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(tmp=tmp, b0=backends[0], b1=backends[1], port=port))
    return ["haproxy", "-db", "-f", str(conf)]
