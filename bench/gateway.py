"""Benchmark: the jishi gateway against nginx and HAProxy, in front of the same instances, in the same run.

    uv run python bench/gateway.py              # 3 interleaved rounds at 64 and at 256 connections (~2 min)
    uv run python bench/gateway.py --quick      # 1 round of 2 s at each level: a smoke run
    uv run python bench/gateway.py --bare       # jishi without its policy chain, for comparison
    uv run --group bench python bench/gateway.py --profile     # + a py-spy profile of jishi during a c64 round
    uv run python bench/gateway.py --syscalls   # + syscalls per request of each proxy (strace -c)
    uv run python bench/gateway.py --features   # CPU per request of each chain section alone (jishi only)
    uv run python bench/gateway.py --floor      # + the floor for any Python proxy (bench/floor_proxy.py)

What it does:
1. installs nginx-light, haproxy and wrk from Debian packages when missing (`bench/peers.py`);
2. starts two fast hello instances (bench/hello.py: uvloop + httptools, 200 "ok") and a real `jishi server`;
   puts the route and registers both instances through the server's HTTP API, as agents and `jishi up` do;
3. starts `jishi gateway` (1 worker) following the server, nginx (1 worker) and HAProxy (1 thread), all
   proxying to the same two instances;
4. pins each proxy to CPU 0 (`taskset`) while wrk (1 thread), the instances and the server share CPU 1;
5. runs interleaved rounds of wrk (nginx, haproxy, jishi; the order rotates each round) at 64 connections, then
   at 256; CPU per request comes from the user + system time of each proxy's processes (/proc/<pid>/stat);
6. prints a table (the median round of each: req/s, p50, p99, CPU µs per request, of which in the kernel) and a
   last line `RESULT {json}` with the medians and jishi's ratios to each peer.

jishi's route carries its **full policy chain** unless `--bare`: least-request balancing, outlier detection, a
circuit breaker, a rate limit far above the load, the route's access log (to a file) and the gateway's metrics
(request stats on and its admin listener up, when the gateway has one). What the gateway does not implement yet
simply has no effect; the RESULT line says which sections were seen working (`chain_seen`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import diagnose
import httpx
import measure
import peers

from jishi.api import HttpControlPlane
from jishi.registry import Health, Instance, Route, RouteBackend
from jishi.registry.policies import AccessLogSpec, BreakerPolicy, LoadBalancing, OutlierDetection, RateLimit
from jishi.testing import free_port, wait_for_port

_TAKEN: set[int] = set()


def unique_port() -> int:
    """A free port not handed out before in this run: the kernel may offer a port again as soon as the socket that
    found it is closed, before the process it was meant for has bound it (two of them on one port, and the bench
    talking to the wrong one)."""
    while True:
        port = free_port()
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


HERE = Path(__file__).resolve().parent
PROXY_CPU = "0"
LOAD_CPU = "1"
MAIN_ROUTE = "bench"  # the route of the comparison run (--features runs one route per configuration)
SECTIONS = ("lb", "outlier", "breaker", "rate_limit", "access_log", "metrics")
ADMIN_OPTIONS = ("--admin-listen", "--admin", "--metrics-listen")  # the gateway's admin/metrics listener


def bench_route(name: str, prefix: str, sections: set[str], tmp: Path) -> Route:
    """The route jishi serves the benchmark by, with the policy sections named in `sections`."""
    policies: dict[str, object] = {}
    if "lb" in sections:
        policies["lb"] = LoadBalancing(policy="least_request")
    if "outlier" in sections:
        policies["outlier"] = OutlierDetection(consecutive_5xx=5, consecutive_gateway_errors=5)
    if "breaker" in sections:
        policies["breaker"] = BreakerPolicy(window_size=100, minimum_calls=20)
    if "rate_limit" in sections:
        policies["rate_limit"] = RateLimit(requests=10_000_000, period=1.0)  # per client IP, far above the load
    if "access_log" in sections:
        policies["access_log"] = AccessLogSpec(path=str(tmp / f"access-{name}.log"))
    backends = [RouteBackend(service="hello")]
    return Route(name=name, prefix=prefix, backends=backends, **policies)  # type: ignore[arg-type]


class Procs:
    """Processes of the run, each in a session of its own (so its process group is its CPU account)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], cpu: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.logdir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env)  # fmt: skip
        self.procs.append(proc)
        return proc

    def show_logs(self, lines: int = 15) -> None:
        """The last lines of every process's log (after a failure)."""
        for path in sorted(self.logdir.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            if tail:
                print(f"--- {path.name}\n" + "\n".join(tail), file=sys.stderr)

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


@dataclass
class Bed:
    """What every comparison run stands on: its processes, scratch folder, the two instances and the server."""

    procs: Procs
    tmp: Path
    ports: list[int]  # the hello instances'
    cp_url: str


@contextmanager
def testbed(prefix: str) -> Iterator[Bed]:
    """Two hello instances and a `jishi server` on the load CPU; on the way out every process is stopped (their
    logs shown first if the run failed) and the scratch folder removed."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    procs = Procs(tmp)
    py = sys.executable
    try:
        ports = [unique_port(), unique_port()]
        for i, port in enumerate(ports):
            procs.start(f"hello{i}", [py, str(HERE / "hello.py"), str(port)], LOAD_CPU)
        cp_port = unique_port()
        procs.start("server", [py, "-m", "jishi.server", "--listen", f"127.0.0.1:{cp_port}", "--data-dir",
                               str(tmp / "server"), "--log-level", "WARNING"], LOAD_CPU)  # fmt: skip
        for port in (*ports, cp_port):
            wait_for_port(port, timeout=20)
        yield Bed(procs, tmp, ports, f"http://127.0.0.1:{cp_port}")
    except Exception:
        procs.show_logs()
        raise
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Target:
    name: str
    url: str
    pgid: int


@dataclass
class Jishi:
    """One `jishi gateway` process of the run, and what its chain needs checking."""

    target: Target
    admin_url: str | None
    access_logs: list[Path]


def gateway_options() -> set[str]:
    """The long options `python -m jishi.gateway` accepts (read from its --help)."""
    out = subprocess.run([sys.executable, "-m", "jishi.gateway", "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"--[a-z][a-z-]+", out))


def start_jishi(
    procs: Procs,
    name: str,
    cp_url: str,
    tmp: Path,
    sections: set[str],
    prefix: str,
    options: set[str],
    env: dict[str, str] | None = None,
) -> Jishi:
    """A `jishi gateway` following `cp_url`, serving route `name` at `prefix` (with `env` when given)."""
    port = unique_port()
    argv = [sys.executable, "-m", "jishi.gateway", "--control-plane", cp_url, "--listen", f"127.0.0.1:{port}",
            "--state-dir", str(tmp / f"gateway-{name}"), "--log-level", "WARNING"]  # fmt: skip
    admin_url = None
    admin = next((opt for opt in ADMIN_OPTIONS if opt in options), None)
    if "metrics" in sections and admin is not None:
        admin_port = unique_port()
        argv += [admin, f"127.0.0.1:{admin_port}"]
        admin_url = f"http://127.0.0.1:{admin_port}"
    proc = procs.start(f"gateway-{name}", argv, PROXY_CPU, env)
    logs = [tmp / f"access-{name}.log"] if "access_log" in sections else []
    label = f"jishi-{name}" if name != MAIN_ROUTE else "jishi"
    return Jishi(Target(label, f"http://127.0.0.1:{port}{prefix}", proc.pid), admin_url, logs)


async def feed_control_plane(cp_url: str, ports: list[int], routes: list[Route]) -> None:
    """Put the routes and register both instances, as agents and `jishi up` do."""
    async with HttpControlPlane(cp_url) as cp:
        for route in routes:
            await cp.put_route(route)
        lease = await cp.grant_lease(3600)
        for i, port in enumerate(ports):
            await cp.register_instance(Instance(id=f"hello-{i}", service="hello", port=port, pid=None), lease)
            await cp.set_health("hello", f"hello-{i}", Health.PASSING)


def wait_serving(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(url, timeout=1)
            if reply.status_code == 200:
                return
            last = f"{reply.status_code} {reply.text[:200]}"

        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s (last: {last})")


def run_once(target: Target, conns: int, seconds: int) -> dict[str, float]:
    """One wrk run against `target`, with the CPU its processes spent meanwhile."""
    return measure.run_once(target.url, target.pgid, conns, seconds, LOAD_CPU)


def interleaved(
    targets: list[Target], levels: list[int], rounds: int, seconds: int
) -> dict[tuple[str, int], list[dict[str, float]]]:
    """`rounds` rounds at each connection level, every target once per round, the order rotating."""
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for target in targets:
        measure.run_wrk(target.url, 64, 1, LOAD_CPU)  # warm-up: connections, pools, caches
    for conns in levels:
        for r in range(rounds):
            order = targets[r % len(targets) :] + targets[: r % len(targets)]
            for target in order:
                run = run_once(target, conns, seconds)
                results.setdefault((target.name, conns), []).append(run)
                print(f"  c{conns:<3d} round {r + 1} {target.name:16s} {run['rps']:>9.0f} req/s  p50 "
                      f"{run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms  cpu {run['cpu_us']:5.1f} µs/req "
                      f"(kernel {run['sys_us']:4.1f})", flush=True)  # fmt: skip
    return results


def table(results: dict[tuple[str, int], list[dict[str, float]]]) -> dict[str, float]:
    """Print the median round of each target and level; the same numbers as a flat dict."""
    print(f"\n{'proxy':16s} {'conns':>5s} {'req/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s} {'cpu µs/req':>10s} "
          f"{'kernel':>6s} {'errors':>6s}")  # fmt: skip
    summary: dict[str, float] = {}
    for (name, conns), runs in results.items():
        m = measure.median_run(runs)
        errors = m["non2xx"] + m["socket_errors"]
        print(f"{name:16s} {conns:>5d} {m['rps']:>9.0f} {m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f} "
              f"{m['cpu_us']:>10.1f} {m['sys_us']:>6.1f} {errors:>6.0f}")  # fmt: skip
        key = name.replace("-", "_")
        summary[f"{key}_rps_c{conns}"] = round(m["rps"], 1)
        summary[f"{key}_p50_ms_c{conns}"] = round(m["p50_ms"], 3)
        summary[f"{key}_p99_ms_c{conns}"] = round(m["p99_ms"], 3)
        summary[f"{key}_cpu_us_c{conns}"] = round(m["cpu_us"], 2)
        summary[f"{key}_sys_us_c{conns}"] = round(m["sys_us"], 2)
        summary[f"{key}_errors_c{conns}"] = errors
    return summary


def ratios(summary: dict[str, float], levels: list[int], peer_names: list[str]) -> None:
    """Add jishi's ratio to each peer: throughput (above 1: jishi faster), p99 and CPU (below 1: jishi better)."""
    for conns in levels:
        for peer in peer_names:
            if f"{peer}_rps_c{conns}" not in summary:
                continue
            summary[f"ratio_{peer}_c{conns}"] = round(
                summary[f"jishi_rps_c{conns}"] / summary[f"{peer}_rps_c{conns}"], 3
            )
            summary[f"p99_ratio_{peer}_c{conns}"] = round(
                summary[f"jishi_p99_ms_c{conns}"] / summary[f"{peer}_p99_ms_c{conns}"], 3
            )
            if summary[f"{peer}_cpu_us_c{conns}"]:
                summary[f"cpu_ratio_{peer}_c{conns}"] = round(
                    summary[f"jishi_cpu_us_c{conns}"] / summary[f"{peer}_cpu_us_c{conns}"], 3
                )


def chain_seen(jishi: Jishi, route: str) -> dict[str, object]:
    """What of the chain showed itself working: access log bytes, metrics naming the route, policy state."""
    seen: dict[str, object] = {"access_log_bytes": sum(p.stat().st_size for p in jishi.access_logs if p.exists())}
    if jishi.admin_url is not None:
        try:
            text = httpx.get(f"{jishi.admin_url}/metrics", timeout=2).text
            seen["metrics_lines_for_route"] = sum(1 for line in text.splitlines() if f'"{route}"' in line)
        except httpx.HTTPError as exc:
            seen["metrics_error"] = str(exc)
    return seen


def policy_state(cp_url: str, route: str) -> object:
    """The control plane's view of the route's policies (GET /v1/stats), if it has one yet."""
    try:
        reply = httpx.get(f"{cp_url}/v1/stats", timeout=2)
        return reply.json().get("policies", {}).get(route) if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def syscall_table(targets: list[Target]) -> dict[str, object]:
    """Syscalls per request of each proxy during one more c64 run under `strace -c`; printed and returned."""
    print("\nsyscalls per request at 64 connections (strace -c, one more 2 s run each):")
    out: dict[str, object] = {}
    for target in targets:
        calls = diagnose.syscalls(target.url, target.pgid, 2, LOAD_CPU)
        top = ", ".join(f"{name} {n:.2f}" for name, n in list(calls.items())[:6])
        print(f"  {target.name:8s} {sum(calls.values()):5.2f}  ({top})")
        out[f"{target.name}_syscalls_per_req"] = round(sum(calls.values()), 3)
        out[f"{target.name}_syscalls"] = {name: round(n, 3) for name, n in calls.items() if n >= 0.01}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds at each connection level")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s at each level")
    ap.add_argument("--bare", action="store_true", help="jishi without its policy chain")
    ap.add_argument("--chain", default=",".join(SECTIONS), help=f"chain sections to turn on (of {','.join(SECTIONS)})")
    ap.add_argument("--features", action="store_true", help="jishi only: bare, each section alone, and all of them")
    ap.add_argument("--floor", action="store_true", help="also the floor for any Python proxy (bench/floor_proxy.py)")
    ap.add_argument("--profile", action="store_true", help="py-spy on jishi during one more c64 round")
    ap.add_argument("--syscalls", action="store_true", help="strace: syscalls per request of each proxy at c64")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="where --profile writes its files")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 2, 1
    sections = set() if args.bare else {s.strip() for s in args.chain.split(",") if s.strip()}
    if unknown := sections - set(SECTIONS):
        ap.error(f"unknown chain sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    if (os.cpu_count() or 1) < 2:
        print("this benchmark pins proxies and load to different CPUs; it needs 2 of them", file=sys.stderr)
        return 2
    peers.ensure_tools()
    py = sys.executable
    with testbed("jishi-bench-") as bed:
        procs, tmp, ports, cp_url = bed.procs, bed.tmp, bed.ports, bed.cp_url
        options = gateway_options()
        if args.features:
            return features(procs, cp_url, ports, tmp, options, args)
        jishi = start_jishi(procs, MAIN_ROUTE, cp_url, tmp, sections, "/", options)
        asyncio.run(feed_control_plane(cp_url, ports, [bench_route(MAIN_ROUTE, "/", sections, tmp)]))
        ngx_port, ha_port = unique_port(), unique_port()
        nginx = procs.start("nginx", peers.nginx_argv(tmp, ngx_port, ports), PROXY_CPU)
        haproxy = procs.start("haproxy", peers.haproxy_argv(tmp, ha_port, ports), PROXY_CPU)
        targets = [Target("nginx", f"http://127.0.0.1:{ngx_port}/", nginx.pid),
                   Target("haproxy", f"http://127.0.0.1:{ha_port}/", haproxy.pid), jishi.target]  # fmt: skip
        if args.floor:
            floor_port = unique_port()
            floor = procs.start("pyfloor", [py, str(HERE / "floor_proxy.py"), str(floor_port),
                                            ",".join(map(str, ports))], PROXY_CPU)  # fmt: skip
            targets.append(Target("pyfloor", f"http://127.0.0.1:{floor_port}/", floor.pid))
        for target in targets:
            wait_serving(target.url)
        chain = ",".join(s for s in SECTIONS if s in sections) or "none (--bare)"
        print(f"jishi gateway fed by a real `jishi server` through its HTTP API (route + 2 instances); chain: {chain}")
        if "metrics" in sections and jishi.admin_url is None:
            print("  (this gateway has no admin listener option yet: metrics run as the gateway does by default)")
        print(f"proxies pinned to CPU {PROXY_CPU} (1 worker each); wrk (1 thread), 2 hello instances and the server "
              f"on CPU {LOAD_CPU}")  # fmt: skip
        levels = [64, 256]
        results = interleaved(targets, levels, args.rounds, args.duration)
        summary: dict[str, object] = dict(table(results))
        ratios(summary, levels, ["nginx", "haproxy"])  # type: ignore[arg-type]
        if args.floor:
            for conns in levels:  # what the floor reaches against nginx, and jishi against the floor
                floor_rps = summary[f"pyfloor_rps_c{conns}"]
                summary[f"pyfloor_ratio_nginx_c{conns}"] = round(floor_rps / summary[f"nginx_rps_c{conns}"], 3)  # type: ignore[operator]
                summary[f"ratio_pyfloor_c{conns}"] = round(summary[f"jishi_rps_c{conns}"] / floor_rps, 3)  # type: ignore[operator]
                summary[f"cpu_ratio_pyfloor_c{conns}"] = round(
                    summary[f"jishi_cpu_us_c{conns}"] / summary[f"pyfloor_cpu_us_c{conns}"],  # type: ignore[operator]
                    3,
                )
        print(f"\njishi/nginx throughput: {summary['ratio_nginx_c64']:.2f}x at 64 connections, "
              f"{summary['ratio_nginx_c256']:.2f}x at 256; jishi/haproxy {summary['ratio_haproxy_c64']:.2f}x and "
              f"{summary['ratio_haproxy_c256']:.2f}x; p99 vs nginx at 64: {summary['p99_ratio_nginx_c64']:.2f}x "
              "(lower is better)")  # fmt: skip
        summary["jishi_chain"] = [s for s in SECTIONS if s in sections]
        summary["chain_seen"] = chain_seen(jishi, MAIN_ROUTE)
        summary["policy_state"] = policy_state(cp_url, MAIN_ROUTE)
        summary["rounds"], summary["seconds_per_run"] = args.rounds, args.duration
        if args.syscalls:
            summary.update(syscall_table(targets))
        if args.profile:
            text = diagnose.profile(jishi.target.url, jishi.target.pgid, max(args.duration, 6), args.out, LOAD_CPU)
            print("\n" + text)
            print(f"(profile written to {args.out / 'gateway-profile.txt'} and gateway-profile.folded)")
        print("RESULT " + json.dumps(summary, sort_keys=True))
        return 0


def features(
    procs: Procs, cp_url: str, ports: list[int], tmp: Path, options: set[str], args: argparse.Namespace
) -> int:
    """jishi alone, once per chain configuration (one gateway process each, all started at once), c64 rounds."""
    configs = {"bare": set(), **{s: {s} for s in SECTIONS}, "full": set(SECTIONS)}
    gateways = {
        name: start_jishi(procs, name, cp_url, tmp, secs, f"/{name}/", options) for name, secs in configs.items()
    }
    routes = [bench_route(name, f"/{name}", secs, tmp) for name, secs in configs.items()]
    asyncio.run(feed_control_plane(cp_url, ports, routes))
    for g in gateways.values():
        wait_serving(g.target.url, timeout=90.0)  # they start together on one CPU: imports alone take seconds
    print(f"jishi only, one gateway per chain configuration, {args.rounds} interleaved rounds at 64 connections")
    results = interleaved([g.target for g in gateways.values()], [64], args.rounds, args.duration)
    summary: dict[str, object] = dict(table(results))
    bare = summary["jishi_bare_cpu_us_c64"]
    print(f"\n{'section':12s} {'cpu µs/req':>10s} {'vs bare':>8s}")
    for name in configs:
        cpu = summary[f"jishi_{name}_cpu_us_c64"]
        summary[f"cost_us_{name}"] = round(cpu - bare, 2)  # type: ignore[operator]
        print(f"{name:12s} {cpu:>10.1f} {cpu - bare:>+8.1f}")  # type: ignore[operator]
    summary["chain_seen"] = {name: chain_seen(g, name) for name, g in gateways.items() if name in ("full", "metrics")}
    print("RESULT " + json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
