"""Where a profiled process spends its time, from py-spy's collapsed stacks (`py-spy record --format raw`).

    argv = record_argv(pid, seconds=4, out=Path("gateway.folded"))     # run it while the load runs
    stacks = parse_collapsed(Path("gateway.folded").read_text())
    print(report(stacks))

Recorded with `--native`, a sample's stack holds the C frames too (uvloop's Cython module, libuv, httptools'
parser, CPython, libc), so each sample is put in one class by its innermost frame:

    waiting      in epoll_wait, or an idle thread waiting for work (not CPU; left out of every share below)
    syscalls     any other libc frame: write, read, writev, accept … (py-spy samples by wall clock, so the
                 time the kernel spends in the call lands here too)
    uvloop       uvloop's loop.c and libuv
    httptools    the HTTP parser (llhttp)
    cpython      the interpreter's own C code and other native code
    python       a Python frame: split into jishi's code and everything else (stdlib, libraries)

Then the top functions by own time, and jishi's functions by "own + what they call outside jishi" (each sample is
charged to its innermost jishi frame), which is where a change in jishi's code can save time.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

__all__ = ["classify", "jishi_frame", "parse_collapsed", "record_argv", "report"]

Stack = tuple[str, ...]

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
_HTTPTOOLS = ("parser.c", "llhttp.c", "api.c", "http.c", "url_parser.c", "url_parser.h")
_LIBUV = ("core.c", "linux.c", "stream.c", "tcp.c", "uv-common.c", "timer.c", "async.c", "poll.c", "signal.c")
_UVLOOP = ("loop.c", *_LIBUV)
# A libc leaf under one of these is an idle thread waiting for work (a thread pool's worker).
_IDLE_THREAD = ("acquire_lock", "SimpleQueue_get", "pthread_cond_wait")


def record_argv(pid: int, seconds: int, out: Path, rate: int = 100, native: bool = True) -> list[str]:
    """py-spy's command line for `seconds` of samples of `pid` into `out` (collapsed stacks)."""
    argv = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate)]
    argv += ["--format", "raw", "--output", str(out)]
    return argv + (["--native"] if native else ["--nonblocking"])  # native stacks need the process paused


def parse_collapsed(text: str) -> list[tuple[Stack, int]]:
    """Stacks (outermost frame first) and their sample counts, from collapsed-stack text."""
    out = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            out.append((tuple(stack.split(";")), int(count)))
    return out


def _split(frame: str) -> tuple[str, str]:
    """(function, file) of a frame like "Hello.data_received (hello.py:28)" or "send (libc.so.6)"."""
    m = _FRAME.match(frame)
    return (m.group("name"), m.group("file")) if m else (frame, "")


def classify(stack: Stack) -> str:
    """The class of one sample by its innermost frame (see the module doc)."""
    _, file = _split(stack[-1])
    if file.startswith("libc.so"):
        return "waiting" if _waiting(stack) else "syscalls"
    if file.endswith(".py"):
        return "python:jishi" if jishi_frame(stack[-1]) else "python:other"
    if file.endswith(_HTTPTOOLS):
        return "httptools"
    if file.endswith(_UVLOOP):
        return "uvloop"
    return "cpython"


def _waiting(stack: Stack) -> bool:
    """A libc leaf that is the loop's epoll_wait (called by libuv's poll itself) or an idle thread's wait."""
    if any(mark in frame for frame in stack for mark in _IDLE_THREAD):
        return True
    i = len(stack) - 1
    while i >= 0 and _split(stack[i])[1].startswith("libc.so"):
        if "epoll" in stack[i]:
            return True
        i -= 1
    return i >= 0 and _split(stack[i])[0] == "uv__io_poll"


def jishi_frame(frame: str) -> bool:
    """A frame of jishi's code — but not a process's entry point, under which the event loop itself runs."""
    _, file = _split(frame)
    if file.endswith(("/main.py", "/__main__.py")):
        return False
    return file.startswith(("jishi/", "src/jishi/")) or "/jishi/" in file


def _label(frame: str) -> str:
    name, file = _split(frame)
    return f"{name} ({file})" if file else name


def report(stacks: list[tuple[Stack, int]], top: int = 25) -> str:
    """A text summary: time by class, top functions by own time, jishi functions with what they call."""
    total = sum(n for _, n in stacks)
    busy_stacks = [(s, n) for s, n in stacks if s and classify(s) != "waiting"]
    busy = sum(n for _, n in busy_stacks)
    lines = [f"{total} samples, {busy} busy ({busy / total:.0%}); shares below are of busy samples" if total else
             "no samples"]  # fmt: skip
    if not busy:
        return "\n".join(lines)
    classes: Counter[str] = Counter()
    own: Counter[str] = Counter()
    charged: Counter[str] = Counter()
    for stack, n in busy_stacks:
        classes[classify(stack)] += n
        own[_label(stack[-1])] += n
        inner = next((f for f in reversed(stack) if jishi_frame(f)), None)
        charged[_label(inner) if inner else "(outside jishi's callbacks: the event loop, threads)"] += n
    lines += ["", "by class of the innermost frame:"]
    lines += [f"  {share(n, busy)}  {name}" for name, n in classes.most_common()]
    lines += ["", f"top {top} functions by own time:"]
    lines += [f"  {share(n, busy)}  {name}" for name, n in own.most_common(top)]
    lines += ["", f"top {top} jishi functions, own time + what they call outside jishi:"]
    lines += [f"  {share(n, busy)}  {name}" for name, n in charged.most_common(top)]
    return "\n".join(lines)


def share(n: int, total: int) -> str:
    return f"{100 * n / total:5.1f}%"
