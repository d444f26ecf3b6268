"""What the gateway benchmark measures: wrk's report, and the CPU a process group spent (from /proc).

    cpu0 = group_cpu(pgid)
    text = run_wrk(url, connections=64, seconds=4, cpu="1")
    run = parse_wrk(text)                               # requests, rps, p50_ms, p99_ms, non2xx, socket_errors
    user, system = group_cpu(pgid) - cpu0               # seconds in user space and in the kernel

CPU per request is (user + system) / requests: on a shared machine it is steadier than req/s, and the split
says how much is syscalls (system) and how much is the process's own code (user: Python, uvloop, the parser).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "Cpu",
    "group_cpu",
    "group_pids",
    "median_run",
    "parse_stat",
    "parse_strace",
    "parse_wrk",
    "run_once",
    "run_wrk",
    "to_ms",
]

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def to_ms(text: str) -> float:
    """wrk's latency notation ("812.00us", "1.52ms", "2.01s") in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if m is None:
        raise ValueError(f"not a wrk latency: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _find(pattern: str, text: str) -> re.Match[str]:
    m = re.search(pattern, text, re.M)
    if m is None:
        raise ValueError(f"wrk's report has no {pattern!r}:\n{text}")
    return m


def parse_wrk(text: str) -> dict[str, float]:
    """The numbers of one `wrk --latency` report."""
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "requests": float(_find(r"(\d+) requests in", text).group(1)),
        "rps": float(_find(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50_ms": to_ms(_find(r"^\s+50%\s+(\S+)", text).group(1)),
        "p99_ms": to_ms(_find(r"^\s+99%\s+(\S+)", text).group(1)),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": float(sum(int(g) for g in socket_errors.groups())) if socket_errors else 0.0,
    }


def run_wrk(url: str, connections: int, seconds: int, cpu: str) -> str:
    """Run wrk (1 thread) pinned to `cpu` against `url`; its report."""
    argv = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout


def run_once(url: str, pgid: int, connections: int, seconds: int, cpu: str) -> dict[str, float]:
    """One wrk run against `url`, with the CPU the process group `pgid` (the proxy) spent meanwhile:
    wrk's numbers plus `cpu_us` and `sys_us`, CPU and kernel µs per request."""
    cpu0 = group_cpu(pgid)
    report = run_wrk(url, connections, seconds, cpu)
    spent = group_cpu(pgid) - cpu0
    run = parse_wrk(report)
    n = run["requests"] or 1.0
    run["cpu_us"] = spent.total / n * 1e6
    run["sys_us"] = spent.system / n * 1e6
    return run


class Cpu(NamedTuple):
    user: float  # seconds
    system: float

    def __sub__(self, other: object) -> Cpu:
        assert isinstance(other, Cpu)
        return Cpu(self.user - other.user, self.system - other.system)

    @property
    def total(self) -> float:
        return self.user + self.system


def parse_stat(text: str) -> tuple[int, int, int]:
    """(process group, utime ticks, stime ticks) from the text of /proc/<pid>/stat."""
    fields = text.rsplit(")", 1)[1].split()  # after the command: state ppid pgrp ... utime(11) stime(12)
    return int(fields[2]), int(fields[11]), int(fields[12])


def _group_stats(pgid: int) -> list[tuple[int, int, int]]:
    """(pid, utime, stime) of every live process in process group `pgid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                group, utime, stime = parse_stat(f.read())
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if group == pgid:
            out.append((int(entry), utime, stime))
    return out


def group_cpu(pgid: int) -> Cpu:
    """User and system CPU seconds of every live process in process group `pgid`."""
    stats = _group_stats(pgid)
    tick = os.sysconf("SC_CLK_TCK")
    return Cpu(sum(s[1] for s in stats) / tick, sum(s[2] for s in stats) / tick)


def group_pids(pgid: int) -> list[int]:
    """The live processes of process group `pgid`."""
    return sorted(s[0] for s in _group_stats(pgid))


def parse_strace(text: str) -> dict[str, int]:
    """Calls per syscall from `strace -c`'s summary table (the "total" row left out)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) in (5, 6) and fields[-1] != "total" and fields[3].isdigit():
            try:
                float(fields[0])
            except ValueError:
                continue
            calls[fields[-1]] = int(fields[3])
    return calls


def median_run(runs: Iterable[dict[str, float]]) -> dict[str, float]:
    """The median of each number over several runs (errors are summed instead)."""
    runs = list(runs)
    out = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    for key in ("non2xx", "socket_errors"):
        if key in out:
            out[key] = sum(r[key] for r in runs)
    return out
