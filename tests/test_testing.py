"""The test doubles are product code: they are tested too."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from jishi.testing import FakeClock, ProcessGroup, free_port, wait_for_port
from jishi.testing.processes import wait_until


def test_fake_clock_moves_only_when_told() -> None:
    """FakeClock returns the same time until advanced, and refuses to go back."""
    clock = FakeClock(10.0)
    assert clock() == 10.0
    clock.advance(0.25)
    assert clock() == 10.25
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(5.0)


def test_free_port_is_bindable_and_wait_for_port_sees_a_listener() -> None:
    """free_port gives a port we can listen on; wait_for_port returns once it accepts."""
    port = free_port()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", port))
        srv.listen()
        wait_for_port(port, timeout=2)


def test_wait_for_port_times_out_on_a_closed_port() -> None:
    """wait_for_port raises TimeoutError when nothing listens."""
    with pytest.raises(TimeoutError):
        wait_for_port(free_port(), timeout=0.2)


def test_process_group_kills_the_whole_session_on_exit(tmp_path: Path) -> None:
    """Stopping a ProcessGroup ends the process and the children it spawned."""
    child_pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(child_pid_file)!r}, 'w').write(str(p.pid));"
        "time.sleep(60)"
    )
    with ProcessGroup(tmp_path / "logs") as group:
        proc = group.start("parent", [sys.executable, "-c", script])
        wait_until(child_pid_file.exists, timeout=10)
        wait_until(lambda: child_pid_file.read_text().strip() != "", timeout=5)
        child_pid = int(child_pid_file.read_text())
    assert not proc.alive()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _exists(child_pid):
        time.sleep(0.02)
    assert not _exists(child_pid)


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_memory_transport_keeps_counts_and_notifies() -> None:
    """MemoryTransport keeps written bytes (or only counts them), calls on_write, and records closing."""
    from jishi.testing import MemoryTransport

    kept = MemoryTransport(("127.0.0.1", 1))
    kept.write(b"ab")
    kept.writelines([b"c", b"de"])
    assert kept.take() == b"abcde" and kept.take() == b"" and kept.written == 5
    calls: list[int] = []
    counted = MemoryTransport(("127.0.0.1", 2), keep=False, on_write=lambda: calls.append(1))
    counted.write(b"xyz")
    counted.writelines([b"1", b"2"])
    assert counted.take() == b"" and counted.written == 5 and calls == [1, 1]
    assert counted.get_extra_info("peername") == ("127.0.0.1", 2) and not counted.is_closing()
    counted.abort()
    assert counted.is_closing()


def test_metric_samples_keys_by_name_and_sorted_labels() -> None:
    """An exposition's samples come back by (name, sorted labels), counters with their _total name."""
    from jishi.testing import metric_samples

    text = '# TYPE jishi_x counter\njishi_x_total{b="2",a="1"} 3.0\n# TYPE jishi_g gauge\njishi_g 7\n'
    assert metric_samples(text) == {
        ("jishi_x_total", (("a", "1"), ("b", "2"))): 3.0,
        ("jishi_g", ()): 7.0,
    }
