"""Instance processes: argv/env rendering, log files, graceful and forced stops, death with the parent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from agent_harness import alive, service_spec

from jishi.agent.process import Launch, render_launch, spawn, terminate
from jishi.errors import ProcessError
from jishi.testing import ProcessGroup
from jishi.testing.processes import wait_until


def test_render_substitutes_port_and_sets_jishi_env(tmp_path: Path) -> None:
    """{port} is replaced in argv and env values; JISHI_SERVICE/INSTANCE/PORT and PORT are set."""
    spec = service_spec(command=["srv", "--listen=127.0.0.1:{port}"], env={"URL": "http://x:{port}/", "A": "b"})
    launch = render_launch(spec, instance_id="web-abc123-0", port=4321, log_dir=tmp_path, base_env={"HOME": "/h"})
    assert launch.argv == ["srv", "--listen=127.0.0.1:4321"]
    assert launch.env == {
        "HOME": "/h",
        "URL": "http://x:4321/",
        "A": "b",
        "JISHI_SERVICE": "web",
        "JISHI_INSTANCE": "web-abc123-0",
        "JISHI_PORT": "4321",
        "PORT": "4321",
    }
    assert launch.log_path == tmp_path / "web-abc123-0.log"


async def test_output_is_appended_to_the_instance_log(tmp_path: Path) -> None:
    """stdout and stderr of two runs end up, in order, in <log_dir>/<instance-id>.log."""
    spec = service_spec(command=[sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    launch = render_launch(spec, instance_id="i-1", port=1, log_dir=tmp_path)
    for _ in range(2):
        proc = await spawn(launch)
        assert await proc.wait() == 0
    assert launch.log_path.read_text().split() == ["out", "err", "out", "err"]


async def test_missing_command_raises_process_error(tmp_path: Path) -> None:
    """A command that does not exist is a ProcessError naming it, not a crash of the caller."""
    launch = render_launch(service_spec(command=["/nonexistent/jishi-cmd"]), instance_id="i", port=1, log_dir=tmp_path)
    with pytest.raises(ProcessError, match="cannot start '/nonexistent/jishi-cmd'"):
        await spawn(launch)


async def test_terminate_sends_sigterm_first(tmp_path: Path) -> None:
    """A process that honours SIGTERM is stopped by it (exit by signal 15), well before the grace ends."""
    launch = render_launch(service_spec(command=["sleep", "30"]), instance_id="i", port=1, log_dir=tmp_path)
    proc = await spawn(launch)
    started = time.monotonic()
    assert await terminate(proc, grace=5.0) == -signal.SIGTERM
    assert time.monotonic() - started < 2.0


async def test_terminate_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    """SIGTERM ignored → SIGKILL after exactly the grace period (not before)."""
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    launch = render_launch(
        service_spec(command=[sys.executable, "-c", code]), instance_id="i", port=1, log_dir=tmp_path
    )
    proc = await spawn(launch)
    await _wait_for_text(launch.log_path, "ready")
    started = time.monotonic()
    assert await terminate(proc, grace=0.5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 2.0


async def test_terminate_ends_the_whole_process_group(tmp_path: Path) -> None:
    """Children the instance started in its group die with it."""
    code = "import subprocess, time; p = subprocess.Popen(['sleep', '60']); print(p.pid, flush=True); time.sleep(60)"
    launch = render_launch(
        service_spec(command=[sys.executable, "-c", code]), instance_id="i", port=1, log_dir=tmp_path
    )
    proc = await spawn(launch)
    await _wait_for_text(launch.log_path, "\n")
    child = int(launch.log_path.read_text().split()[0])
    await terminate(proc, grace=2.0)
    await asyncio.sleep(0.1)
    assert not alive(child)


def test_instance_dies_when_its_parent_is_sigkilled(procs: ProcessGroup, tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: SIGKILL of the process that spawned an instance kills the instance too — no orphan."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from jishi.agent.process import spawn, Launch
        async def main():
            proc = await spawn(Launch(["sleep", "60"], {{}}, None, Path({str(tmp_path)!r}) / "i.log"))
            print(proc.pid, flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
        """
    )
    parent = procs.python("parent", "-c", script)
    wait_until(lambda: parent.log().strip() != "", timeout=10)
    instance = int(parent.log().split()[0])
    try:
        assert alive(instance)
        parent.signal(signal.SIGKILL)
        parent.popen.wait(timeout=5)
        wait_until(lambda: not alive(instance), timeout=2)
    finally:  # if the behaviour is broken, do not leave the orphan behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(instance, signal.SIGKILL)


def _python(code: str, log_dir: Path) -> Launch:
    return render_launch(service_spec(command=[sys.executable, "-c", code]), instance_id="i", port=1, log_dir=log_dir)


async def _wait_for_text(path: Path, text: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _has_text(path, text):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


def _has_text(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


def test_sleep_is_available() -> None:
    """The tests above rely on /bin/sleep."""
    assert subprocess.run(["sleep", "0"], check=False).returncode == 0
