"""Looking inside one proxy under load, for the gateway benchmark: a py-spy profile, and syscalls per request.

    text = profile(url, pgid, seconds=6, out_dir=Path("bench/results"), load_cpu="1")
    calls = syscalls(url, pgid, seconds=2, load_cpu="1")      # {"write": 2.0, "read": 2.1, ...} per request

Both attach to a running proxy for one more wrk run at 64 connections that is not counted in the comparison
(the tool slows the proxy down). The tools run on the load CPU, not on the proxy's.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measure
import pyspy

__all__ = ["profile", "syscalls"]


def profile(url: str, pgid: int, seconds: int, out_dir: Path, load_cpu: str) -> str:
    """py-spy (native stacks) on process `pgid` during a c64 wrk run; the report, also saved in `out_dir`
    (gateway-profile.txt, and the collapsed stacks in gateway-profile.folded for a flame graph)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is missing: run with `uv run --group bench python bench/gateway.py --profile`")
    out_dir.mkdir(parents=True, exist_ok=True)
    folded = out_dir / "gateway-profile.folded"
    argv = pyspy.record_argv(pgid, seconds, folded)
    argv[0] = spy
    with subprocess.Popen(["taskset", "-c", load_cpu, *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE) as spying:  # fmt: skip
        time.sleep(0.3)  # attached before the load starts
        run = measure.run_once(url, pgid, 64, seconds + 1, load_cpu)
        _, err = spying.communicate(timeout=seconds + 60)
    if spying.returncode != 0 or not folded.exists():
        raise RuntimeError(f"py-spy failed ({spying.returncode}): {err.decode(errors='replace')}")
    text = (f"py-spy on the jishi gateway (pid {pgid}) during a c64 wrk run: {run['rps']:.0f} req/s under "
            f"the profiler, {run['cpu_us']:.1f} µs CPU/req (kernel {run['sys_us']:.1f})\n\n")  # fmt: skip
    text += pyspy.report(pyspy.parse_collapsed(folded.read_text()))
    (out_dir / "gateway-profile.txt").write_text(text + "\n")
    return text


def syscalls(url: str, pgid: int, seconds: int, load_cpu: str) -> dict[str, float]:
    """Syscalls per request of every process of group `pgid` during a c64 wrk run (`strace -c -f`)."""
    if shutil.which("strace") is None:
        raise SystemExit("strace is missing: apt-get install -y strace")
    with tempfile.TemporaryDirectory(prefix="jishi-strace-") as tmp:
        out = Path(tmp) / "summary.txt"
        argv = ["taskset", "-c", load_cpu, "strace", "-c", "-f", "-q", "-o", str(out)]
        for pid in measure.group_pids(pgid):
            argv += ["-p", str(pid)]
        with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as tracing:
            time.sleep(0.5)  # attached before the load starts
            report = measure.parse_wrk(measure.run_wrk(url, 64, seconds, load_cpu))
            tracing.send_signal(signal.SIGINT)  # detach; strace writes its summary
            _, err = tracing.communicate(timeout=30)
        if not out.exists():
            raise RuntimeError(f"strace failed ({tracing.returncode}): {err.decode(errors='replace')}")
        calls = measure.parse_strace(out.read_text())
    n = report["requests"] or 1.0
    return {name: count / n for name, count in sorted(calls.items(), key=lambda kv: -kv[1])}
