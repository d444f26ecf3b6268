"""Real processes for integration tests, always cleaned up by PID.

A `ProcessGroup` starts each process in its own session (so its children can be signalled together),
sends its output to a log file, and on exit stops every process it started: SIGTERM to the process group,
then SIGKILL after a grace period. Use it as a context manager, or call `stop_all()` in a fixture finaliser.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL it. Returns the exit code."""
        if self.popen.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        # Children that outlived their parent in the same group are ended too.
        _signal_group(self.pid, signal.SIGKILL)
        return self.popen.returncode


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class ProcessGroup:
    """Starts processes and stops them all on exit. `log_dir` receives one `<name>.log` each."""

    log_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        proc = ManagedProcess(name, popen, log_path)
        self.processes.append(proc)
        return proc

    def python(self, name: str, *args: str, **kwargs: object) -> ManagedProcess:
        """Start `python ARGS…` with this interpreter."""
        return self.start(name, [sys.executable, *args], **kwargs)  # type: ignore[arg-type]

    def stop_all(self, grace: float = 5.0) -> None:
        for proc in reversed(self.processes):
            proc.stop(grace)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll `predicate()` until it is truthy; AssertionError after `timeout` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s: {predicate}")
