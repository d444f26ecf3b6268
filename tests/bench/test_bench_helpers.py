"""The gateway benchmark's parsing helpers: wrk's report, /proc stat lines, py-spy's collapsed stacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gateway_ab
import httpx
import measure
import peers
import pyspy
import pytest

import gateway
from jishi.testing import ProcessGroup, free_port, wait_for_port

WRK_REPORT = """Running 4s test @ http://127.0.0.1:40123/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    1.02ms  24.50ms   90.12%
    Req/Sec    20.01k     1.10k   22.30k    78.00%
  Latency Distribution
     50%    3.05ms
     75%    3.40ms
     90%    4.01ms
     99%   812.00us
  79650 requests in 4.00s, 9.42MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  19912.50
Transfer/sec:      2.35MB
"""


def test_parse_wrk_reads_counts_rate_percentiles_and_errors():
    """parse_wrk takes requests, req/s, p50/p99 (in ms, whatever wrk's unit) and sums the socket errors."""
    run = measure.parse_wrk(WRK_REPORT)
    assert run == {
        "requests": 79650.0,
        "rps": 19912.5,
        "p50_ms": 3.05,
        "p99_ms": pytest.approx(0.812),
        "non2xx": 7.0,
        "socket_errors": 5.0,
    }


def test_parse_wrk_without_error_lines_reports_zero_errors():
    """A clean run has no error lines; both error counts are 0."""
    clean = "\n".join(line for line in WRK_REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line)
    run = measure.parse_wrk(clean)
    assert run["non2xx"] == 0.0 and run["socket_errors"] == 0.0


def test_parse_wrk_names_what_is_missing():
    """A report without the latency distribution is refused with a message naming the missing line."""
    with pytest.raises(ValueError, match="50%"):
        measure.parse_wrk(WRK_REPORT.replace("     50%    3.05ms\n", ""))


def test_to_ms_converts_every_wrk_unit():
    """wrk's us, ms, s and m suffixes all come out in milliseconds."""
    assert [measure.to_ms(t) for t in ("500.00us", "1.50ms", "2.00s", "1.00m")] == [0.5, 1.5, 2000.0, 60000.0]
    with pytest.raises(ValueError):
        measure.to_ms("fast")


def test_parse_stat_survives_spaces_and_parens_in_the_command():
    """The process group and utime/stime fields are found after the last ')', whatever the command name holds."""
    line = "4242 (py (worker) 1) S 1 4200 4200 0 -1 4194560 100 0 0 0 731 52 0 0 20 0 3 0 99 0 0"
    assert measure.parse_stat(line) == (4200, 731, 52)


def test_group_cpu_of_this_process_group_is_positive():
    """group_cpu finds this test's own process group and reports some CPU time for it."""
    cpu = measure.group_cpu(os.getpgrp())
    assert cpu.total > 0 and cpu.user >= 0 and cpu.system >= 0


def test_median_run_takes_medians_and_sums_errors():
    """The median round's numbers, but errors over every round."""
    runs = [
        {"rps": 10.0, "non2xx": 1.0, "socket_errors": 0.0},
        {"rps": 30.0, "non2xx": 0.0, "socket_errors": 2.0},
        {"rps": 20.0, "non2xx": 1.0, "socket_errors": 0.0},
    ]
    assert measure.median_run(runs) == {"rps": 20.0, "non2xx": 2.0, "socket_errors": 2.0}


STRACE_SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 76.76    0.203655          19     10513           write
 17.39    0.046136           4     10516         3 read
  5.70    0.015126          16       942           epoll_pwait
------ ----------- ----------- --------- --------- ----------------
100.00    0.265300          12     21971         3 total
"""


def test_parse_strace_reads_calls_per_syscall_with_or_without_errors():
    """Calls by syscall name from strace -c's table; the errors column may be empty; the total row is left out."""
    assert measure.parse_strace(STRACE_SUMMARY) == {"write": 10513, "read": 10516, "epoll_pwait": 942}


FOLDED = """\
<module> (main.py:1);uv_run (core.c:464);uv__io_poll (linux.c:1452);epoll_pwait (libc.so.6) 50
<module> (main.py:1);uv_run (core.c:464);uv__io_poll (linux.c:1546);ClientConnection.flush (jishi/gateway/downstream.py:300);write (libc.so.6) 20
<module> (main.py:1);uv_run (core.c:464);uv__io_poll (linux.c:1546);ClientConnection.data_received (jishi/gateway/downstream.py:120) 10
<module> (main.py:1);uv_run (core.c:464);ClientConnection.data_received (jishi/gateway/downstream.py:120);feed_data (parser.c:6373) 6
<module> (main.py:1);uv_run (core.c:464);loop_run (loop.c:100);encode (json/encoder.py:200) 4
thread_run (libpython3.11.so.1.0);_worker (concurrent/futures/thread.py:81);PyThread_acquire_lock_timed (libpython3.11.so.1.0);0x7f (libc.so.6) 30
"""  # noqa: E501


def test_classify_splits_waiting_syscalls_parser_and_python():
    """Each sample's class comes from its innermost frame; epoll and idle threads are waiting."""
    stacks = pyspy.parse_collapsed(FOLDED)
    assert [n for _, n in stacks] == [50, 20, 10, 6, 4, 30]
    assert [pyspy.classify(s) for s, _ in stacks] == [
        "waiting",
        "syscalls",
        "python:jishi",
        "httptools",
        "python:other",
        "waiting",
    ]


def test_report_shares_are_of_busy_samples_and_charge_the_innermost_jishi_frame():
    """40 of 120 samples are busy; flush owns its write (50%), data_received its parser time (40%)."""
    text = pyspy.report(pyspy.parse_collapsed(FOLDED), top=5)
    assert text.startswith("120 samples, 40 busy (33%)")
    assert " 50.0%  syscalls" in text
    assert " 50.0%  ClientConnection.flush (jishi/gateway/downstream.py)" in text
    assert " 40.0%  ClientConnection.data_received (jishi/gateway/downstream.py)" in text
    assert " 10.0%  (outside jishi's callbacks: the event loop, threads)" in text


def test_record_argv_pauses_the_process_only_for_native_stacks():
    """Native stacks need py-spy to pause the process; Python-only sampling does not."""
    native = pyspy.record_argv(7, 5, Path("/tmp/x.folded"))
    assert native[:4] == ["py-spy", "record", "--pid", "7"] and "--native" in native and "--nonblocking" not in native
    assert "--nonblocking" in pyspy.record_argv(7, 5, Path("/tmp/x.folded"), native=False)


def test_peer_configs_name_both_instances_and_one_worker(tmp_path: Path):
    """nginx and HAProxy configs proxy to both instances with one worker / thread, on the given port."""
    argv = peers.nginx_argv(tmp_path, 8001, [9001, 9002])
    conf = (tmp_path / "nginx.conf").read_text()
    assert argv[:2] == ["nginx", "-c"] and "worker_processes 1;" in conf and "listen 127.0.0.1:8001;" in conf
    assert "127.0.0.1:9001;" in conf and "127.0.0.1:9002;" in conf
    argv = peers.haproxy_argv(tmp_path, 8002, [9001, 9002])
    conf = (tmp_path / "haproxy.cfg").read_text()
    assert argv[:2] == ["haproxy", "-db"] and "nbthread 1" in conf and "bind 127.0.0.1:8002" in conf
    assert "127.0.0.1:9001" in conf and "127.0.0.1:9002" in conf


def test_chain_microbenchmark_runs_every_configuration():
    """bench/gateway_chain.py proxies through every chain configuration and prints a RESULT with each cost."""
    script = Path(__file__).resolve().parents[2] / "bench" / "gateway_chain.py"
    done = subprocess.run(
        [sys.executable, str(script), "--requests", "1000", "--repeat", "1"], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1].removeprefix("RESULT "))
    for name in ("metrics", "lb", "outlier", "breaker", "rate_limit", "access_log", "full"):
        assert f"cost_us_{name}" in result and result[f"{name}_us"] > 0


def test_bench_route_carries_each_chain_section_asked_for(tmp_path: Path):
    """The benchmark's route has exactly the policy sections named, with a rate limit far above any load."""
    full = gateway.bench_route("bench", "/", set(gateway.SECTIONS), tmp_path)
    assert full.lb is not None and full.lb.policy == "least_request"
    assert full.outlier is not None and full.breaker is not None
    assert full.rate_limit is not None and full.rate_limit.requests / full.rate_limit.period >= 1_000_000
    assert full.access_log is not None and full.access_log.path == str(tmp_path / "access-bench.log")
    bare = gateway.bench_route("bench", "/", set(), tmp_path)
    sections = ("lb", "outlier", "breaker", "rate_limit", "access_log", "retry", "timeout", "bulkhead", "concurrency")
    assert all(getattr(bare, name) is None for name in sections)


def test_floor_proxy_relays_keep_alive_requests_with_forwarded_headers(procs: ProcessGroup) -> None:
    """bench/floor_proxy.py (the benchmark's Python floor) answers several requests on one connection, from
    both instances in turn, each seeing the X-Forwarded-For the other proxies add."""
    bench = Path(__file__).resolve().parents[2] / "bench"
    backend = Path(__file__).resolve().parents[1] / "gateway" / "backend.py"
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        procs.start(f"b{i}", [sys.executable, str(backend), str(port), f"b{i}"])
    proxy_port = free_port()
    procs.start("floor", [sys.executable, str(bench / "floor_proxy.py"), str(proxy_port), ",".join(map(str, ports))])
    for port in (*ports, proxy_port):
        wait_for_port(port)
    with httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", timeout=5) as client:
        answers = [client.get("/whoami").json() for _ in range(4)]
    assert [a["name"] for a in answers] == ["b0", "b1", "b0", "b1"]
    assert all(a["headers"].get("x-forwarded-for") == "127.0.0.1" for a in answers)


def test_ab_unpacks_the_base_commits_source(tmp_path: Path) -> None:
    """bench/gateway_ab.py takes the base gateway from git: HEAD's src/ unpacked holds the jishi package."""
    src = gateway_ab.unpack("HEAD", tmp_path)
    assert (src / "jishi" / "gateway" / "proxy.py").is_file()
