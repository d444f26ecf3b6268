"""One platform process that `jishi up` runs: started in its own session, logged to a file, stopped by PID.

A `Child` is the server, the gateway or the agent. It starts with PR_SET_PDEATHSIG=SIGTERM (Linux), so if
`jishi up` itself dies — even by SIGKILL — each child gets the same graceful stop it would have got from
Ctrl-C, and nothing is left behind. `stop()` sends SIGTERM to the child's process group, waits up to a bound,
then SIGKILLs the group.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jishi.core.backoff import RestartBackoff
from jishi.registry.model import RestartPolicy

__all__ = ["PLATFORM_RESTART", "Child", "describe_exit"]

log = logging.getLogger(__name__)

# Platform processes restart fast at first and at most every 10 s while crash-looping; 10 s up resets.
PLATFORM_RESTART = RestartPolicy(initial_delay=0.2, max_delay=10.0, multiplier=2.0, reset_after=10.0, jitter=0.1)
_PR_SET_PDEATHSIG = 1

try:
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: children are still stopped by `up`'s own shutdown
    _prctl = None


def _die_with(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:  # in the child, between fork and exec
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    backoff: RestartBackoff = field(default_factory=lambda: RestartBackoff(PLATFORM_RESTART))
    popen: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None  # monotonic time of the next restart, when it has exited
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self, now: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()),
            )
        self.restart_at = None
        self.backoff.healthy(now)  # running counts as healthy: 10 s up resets the backoff
        log.info("%s started (pid %d): %s", self.name, self.popen.pid, " ".join(self.argv))

    def poll(self) -> int | None:
        """The exit code if the process has exited, else None (also None when it was never started)."""
        if self.popen is None:
            return None
        return self.popen.poll()

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float, hurry: Callable[[], bool] = lambda: False) -> int | None:
        """SIGTERM the group, wait up to `timeout` s (less if `hurry()` turns true), then SIGKILL the group."""
        if self.popen is None:
            return None
        pid = self.popen.pid
        if self.popen.poll() is None:
            _killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.popen.poll() is None and time.monotonic() < deadline and not hurry():
                time.sleep(0.05)
            if self.popen.poll() is None:
                why = "told to hurry" if hurry() else f"did not stop within {timeout:.0f} s"
                log.warning("%s (pid %d) %s; killing it", self.name, pid, why)
                _killpg(pid, signal.SIGKILL)
                try:
                    self.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:  # e.g. stuck in uninterruptible I/O: move on to the next
                    log.error("%s (pid %d) survived SIGKILL for 5 s; leaving it to the kernel", self.name, pid)
        _killpg(pid, signal.SIGKILL)  # anything left in its group (gateway workers, say)
        code = self.popen.returncode
        self.popen = None
        self.restart_at = None
        return code


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
