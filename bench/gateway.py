"""Benchmark: the jishi gateway against nginx, in front of the same backends, in the same run.

    uv run python bench/gateway.py [--duration 4] [--rounds 3] [--quick]

What it does (about a minute):
1. installs nginx and wrk from Debian packages when they are missing (`apt-get install -y nginx-light wrk`);
2. starts two fast hello instances (bench/hello.py: uvloop + httptools, 200 "ok");
3. starts a real `jishi server`, and feeds it the route and the two instances through its HTTP API, as in
   production; starts `jishi gateway` (1 worker) following it;
4. starts nginx (1 worker, upstream keepalive 128, access log off) proxying to the same two instances;
5. pins each proxy to CPU 0 (`taskset`) while wrk, the instances and the control plane share CPU 1;
6. runs interleaved rounds of wrk (1 thread) at 64 connections, then 256, alternating nginx and jishi;
7. prints a table (req/s, p50, p99, CPU µs per request of the proxy's processes; the median round of each)
   and a last line `RESULT {json}`.

`--access-log` runs the jishi gateway with its access log on (nginx keeps its own off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from jishi.api import HttpControlPlane
from jishi.registry import Health, Instance, Route, RouteBackend
from jishi.testing import free_port, wait_for_port

HERE = Path(__file__).resolve().parent
PROXY_CPU = "0"
LOAD_CPU = "1"

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


def ensure_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk", "taskset") if shutil.which(tool) is None]
    if not missing:
        return
    print(f"installing {', '.join(missing)} from Debian packages …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light", "wrk", "util-linux"], check=True, env=env)


class Procs:
    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], cpu: str) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def feed_control_plane(cp_url: str, ports: list[int]) -> None:
    """Put the route and register both instances, as agents and `jishi up` do."""
    async with HttpControlPlane(cp_url) as cp:
        await cp.put_route(Route(name="bench", prefix="/", backends=[RouteBackend(service="hello")]))
        lease = await cp.grant_lease(3600)
        for i, port in enumerate(ports):
            await cp.register_instance(Instance(id=f"hello-{i}", service="hello", port=port, pid=None), lease)
            await cp.set_health("hello", f"hello-{i}", Health.PASSING)


def wait_serving(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group `pgid` (from /proc)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state ppid pgrp ... utime(11) stime(12)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(url: str, connections: int, duration: float, pgid: int | None = None) -> dict[str, float]:
    seconds = max(1, round(duration))
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    cpu0 = group_cpu_seconds(pgid) if pgid is not None else 0.0
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cpu = group_cpu_seconds(pgid) - cpu0 if pgid is not None else 0.0
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "cpu_us": cpu / total * 1e6 if total else 0.0,
        "non2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds at 64 connections")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s at each level")
    ap.add_argument("--access-log", action="store_true", help="run the jishi gateway with its access log on")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 2.0, 1
    if (os.cpu_count() or 1) < 2:
        print("this benchmark pins proxies and load to different CPUs; it needs 2 of them", file=sys.stderr)
        return 2
    ensure_tools()
    tmp = Path(tempfile.mkdtemp(prefix="jishi-bench-"))
    procs = Procs(tmp)
    py = sys.executable
    try:
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            procs.start(f"hello{i}", [py, str(HERE / "hello.py"), str(port)], LOAD_CPU)
        cp_port, gw_port, ngx_port = free_port(), free_port(), free_port()
        procs.start("server", [py, "-m", "jishi.server", "--listen", f"127.0.0.1:{cp_port}", "--data-dir",
                               str(tmp / "server"), "--log-level", "WARNING"], LOAD_CPU)  # fmt: skip
        for port in (*ports, cp_port):
            wait_for_port(port, timeout=20)
        cp_url = f"http://127.0.0.1:{cp_port}"
        gw_argv = [py, "-m", "jishi.gateway", "--control-plane", cp_url, "--listen", f"127.0.0.1:{gw_port}",
                   "--state-dir", str(tmp / "gateway"), "--log-level", "WARNING"]  # fmt: skip
        if args.access_log:
            gw_argv += ["--access-log", str(tmp / "access.log")]
        gateway = procs.start("gateway", gw_argv, PROXY_CPU)
        asyncio.run(feed_control_plane(cp_url, ports))
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, b0=ports[0], b1=ports[1], port=ngx_port))
        nginx = procs.start("nginx", ["nginx", "-c", str(conf), "-p", str(tmp)], PROXY_CPU)
        targets = {"nginx": f"http://127.0.0.1:{ngx_port}/", "jishi": f"http://127.0.0.1:{gw_port}/"}
        groups = {"nginx": nginx.pid, "jishi": gateway.pid}  # each started in a session of its own
        for url in targets.values():
            wait_serving(url)
        print("jishi gateway fed by a real `jishi server` through its HTTP API (route + 2 instances)")
        print(f"proxies pinned to CPU {PROXY_CPU}; wrk (1 thread), 2 hello instances and the server on CPU {LOAD_CPU}")
        levels = [(64, args.rounds), (256, max(1, args.rounds - 1))]
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for url in targets.values():
            wrk(url, 64, 1.0)  # warm-up: connections, pools, caches
        for conns, rounds in levels:
            for r in range(rounds):
                order = list(targets.items()) if r % 2 == 0 else list(reversed(targets.items()))
                for name, url in order:
                    res = wrk(url, conns, args.duration, groups[name])
                    results.setdefault((name, conns), []).append(res)
                    print(f"  c{conns} round {r + 1} {name:6s} {res['rps']:>9.0f} req/s  p50 {res['p50_ms']:.2f} ms"
                          f"  p99 {res['p99_ms']:.2f} ms  cpu {res['cpu_us']:.1f} µs/req", flush=True)  # fmt: skip
        print()
        print(f"{'proxy':8s} {'conns':>5s} {'req/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'cpu µs/req':>10s} "
              f"{'errors':>7s}")  # fmt: skip
        summary: dict[str, float] = {}
        for (name, conns), runs in results.items():
            rps = statistics.median(r["rps"] for r in runs)
            p50 = statistics.median(r["p50_ms"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            cpu = statistics.median(r["cpu_us"] for r in runs)
            errors = sum(r["non2xx"] + r["socket_errors"] for r in runs)
            summary[f"{name}_rps_c{conns}"] = round(rps, 1)
            summary[f"{name}_p50_ms_c{conns}"] = round(p50, 3)
            summary[f"{name}_p99_ms_c{conns}"] = round(p99, 3)
            summary[f"{name}_cpu_us_c{conns}"] = round(cpu, 2)
            summary[f"{name}_errors_c{conns}"] = errors
            print(f"{name:8s} {conns:>5d} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {cpu:>10.1f} {errors:>7.0f}")
        for conns, _ in levels:
            summary[f"ratio_nginx_c{conns}"] = round(summary[f"jishi_rps_c{conns}"] / summary[f"nginx_rps_c{conns}"], 3)
            summary[f"p99_ratio_nginx_c{conns}"] = round(
                summary[f"jishi_p99_ms_c{conns}"] / summary[f"nginx_p99_ms_c{conns}"], 3
            )
            if summary[f"nginx_cpu_us_c{conns}"]:  # CPU per request: steadier than req/s on a shared machine
                summary[f"cpu_ratio_nginx_c{conns}"] = round(
                    summary[f"jishi_cpu_us_c{conns}"] / summary[f"nginx_cpu_us_c{conns}"], 3
                )
        print(f"\njishi/nginx throughput at 64 connections: {summary['ratio_nginx_c64']:.2f}x; "
              f"p99 latency ratio {summary['p99_ratio_nginx_c64']:.2f}x (lower is better)")  # fmt: skip
        summary["feed"] = "control_plane_api"  # type: ignore[assignment]
        summary["jishi_access_log"] = args.access_log  # type: ignore[assignment]
        print("RESULT " + json.dumps(summary, sort_keys=True))
        return 0
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
