"""A/B benchmark: the jishi gateway of another commit against this tree's, in the same run, interleaved.

    uv run python bench/gateway_ab.py --base HEAD~3               # full chain, 6 rounds of 3 s at 64 connections
    uv run python bench/gateway_ab.py --base 847fdb3 --bare       # without the policy chain
    uv run python bench/gateway_ab.py --base v1 --conns 256 --rounds 8

`bench/gateway.py` compares jishi with nginx and HAProxy; this compares jishi with itself, to tell whether a
change made the gateway cheaper. The machine's speed drifts by tens of percent within minutes (a shared VM), far
more than most changes, so both gateways run side by side: the base commit's `src/` is unpacked from git into a
temporary folder and put first on the gateway's PYTHONPATH, the other gateway runs this tree; both follow the
same `jishi server`, proxy to the same two hello instances, are pinned to CPU 0 (wrk, the instances and the
server to CPU 1), and take turns, the order alternating, for `--rounds` wrk runs each. It prints each run, then
the median and the best run of each: CPU µs per request (all of it and the user-space part), req/s and p99,
and `RESULT {json}` with `cpu_us_base`, `cpu_us_head`, `cpu_change` (head/base − 1: below 0 is cheaper) and
the same for req/s and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import gateway as bench

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def unpack(rev: str, into: Path) -> Path:
    """The `src/` folder of commit `rev`, unpacked under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def start(bed: bench.Bed, name: str, sections: set[str], src: Path | None, options: set[str]) -> bench.Target:
    """One gateway (of the base commit when `src` is given) serving route `name` at /name/."""
    env = dict(os.environ)
    if src is not None:  # ahead of the installed (editable) jishi
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH", "")]))
    jishi = bench.start_jishi(bed.procs, name, bed.cp_url, bed.tmp, sections, f"/{name}/", options, env)
    return bench.Target(name, jishi.target.url, jishi.target.pgid)


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        "cpu_us": statistics.median(r["cpu_us"] for r in runs),
        "cpu_us_best": min(r["cpu_us"] for r in runs),
        "user_us": statistics.median(r["cpu_us"] - r["sys_us"] for r in runs),
        "rps": statistics.median(r["rps"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit to compare this tree with (anything git names)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--bare", action="store_true", help="without the policy chain")
    args = ap.parse_args()
    sections = set() if args.bare else set(bench.SECTIONS)
    bench.peers.ensure_tools()
    with bench.testbed("jishi-ab-") as bed:
        tmp, ports, cp_url = bed.tmp, bed.ports, bed.cp_url
        base_src = unpack(args.base, tmp)
        options = bench.gateway_options()  # this tree's; a base commit must accept the same admin option
        targets = [
            start(bed, "base", sections, base_src, options),
            start(bed, "head", sections, None, options),
        ]
        routes = [bench.bench_route(t.name, f"/{t.name}", sections, tmp) for t in targets]
        asyncio.run(bench.feed_control_plane(cp_url, ports, routes))
        for t in targets:
            bench.wait_serving(t.url, timeout=60)
        print(f"base {args.base} against this tree; chain: {','.join(sorted(sections)) or 'none'}; "
              f"{args.rounds} rounds of {args.duration} s at {args.conns} connections")  # fmt: skip
        results = bench.interleaved(targets, [args.conns], args.rounds, args.duration)
        base, head = summary(results[("base", args.conns)]), summary(results[("head", args.conns)])
        print(f"\n{'':5s} {'cpu µs/req':>10s} {'best':>6s} {'user':>6s} {'req/s':>8s} {'p99 ms':>7s}")
        for name, s in (("base", base), ("head", head)):
            print(f"{name:5s} {s['cpu_us']:>10.1f} {s['cpu_us_best']:>6.1f} {s['user_us']:>6.1f} {s['rps']:>8.0f} "
                  f"{s['p99_ms']:>7.2f}")  # fmt: skip
        result: dict[str, object] = {"base": args.base, "conns": args.conns, "rounds": args.rounds, "bare": args.bare}
        for key in ("cpu_us", "cpu_us_best", "user_us", "rps", "p99_ms"):
            result[f"{key}_base"], result[f"{key}_head"] = round(base[key], 2), round(head[key], 2)
        for key in ("cpu_us", "rps", "p99_ms"):
            result[f"{key.split('_')[0]}_change"] = round(head[key] / base[key] - 1, 3)
        print("RESULT " + json.dumps(result, sort_keys=True))
        return 0


if __name__ == "__main__":
    sys.exit(main())
