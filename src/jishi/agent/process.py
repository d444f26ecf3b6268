"""Instance processes: how the agent starts one, and how it ends one without leaving orphans.

Every instance runs in its own session (so its whole process group can be signalled), with stdout and stderr
appended to `<log_dir>/<instance-id>.log`, and with PR_SET_PDEATHSIG=SIGKILL: if the agent dies for any reason,
SIGKILL included, the kernel kills the instance too. That signal reaches only the instance's own process, not
its children: those are ended by killing the whole group whenever the instance exits, and after a SIGKILL of
the agent by the next agent start (`jishi.agent.groups`). `{port}` is replaced in every argv element and env value.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from jishi.errors import ProcessError
from jishi.registry.model import ServiceSpec

__all__ = ["Launch", "kill_group", "render_launch", "spawn", "terminate"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
try:  # loaded once here: the child must not load libraries between fork and exec
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal; graceful stops still work
    _prctl = None


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything needed to start one instance process."""

    argv: list[str]
    env: dict[str, str]  # the full environment of the child
    cwd: str | None
    log_path: Path


def render_launch(
    spec: ServiceSpec,
    *,
    instance_id: str,
    port: int,
    log_dir: Path,
    base_env: Mapping[str, str] | None = None,
) -> Launch:
    """The argv and environment of one instance of `spec` listening on `port`."""
    sub = str(port)
    env = dict(os.environ if base_env is None else base_env)
    env.update({k: v.replace("{port}", sub) for k, v in spec.env.items()})
    env.update({"JISHI_SERVICE": spec.name, "JISHI_INSTANCE": instance_id, "JISHI_PORT": sub, "PORT": sub})
    argv = [arg.replace("{port}", sub) for arg in spec.command]
    return Launch(argv, env, spec.cwd, log_dir / f"{instance_id}.log")


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


async def spawn(launch: Launch) -> asyncio.subprocess.Process:
    """Start the process; raises ProcessError (with the reason) if it cannot be started at all."""
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(launch.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        try:
            return await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=launch.env,
                cwd=launch.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            raise ProcessError(f"cannot start {launch.argv[0]!r}: {exc}") from exc
    finally:
        os.close(out)  # the child holds its own copy


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the instance's whole process group (its session leader is the instance itself)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def terminate(proc: asyncio.subprocess.Process, grace: float) -> int | None:
    """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL it. Returns the exit code."""
    if proc.returncode is None:
        kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            log.warning("pid %d did not stop within %.1f s of SIGTERM; sending SIGKILL", proc.pid, grace)
            kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    kill_group(proc.pid)  # children the instance left behind in its group
    return proc.returncode
