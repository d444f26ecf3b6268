"""Where gateway metrics come from (one process, or N workers' files) and their push to the control plane."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from jishi.gateway.proxy import Proxy
from jishi.gateway.reporter import LocalMetrics, Reporter, WorkerMetrics, publish_worker
from jishi.gateway.stats import ROW_LEN, Stats
from jishi.registry.model import EventRecord


class FlakyControlPlane:
    """Takes reports, failing the first `failures` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reports: list[tuple[str, dict[str, Any]]] = []

    async def report_gateway(self, gateway_id: str, report: dict[str, Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("control plane down")
        self.reports.append((gateway_id, report))


def event(subject: str, at: float) -> EventRecord:
    return EventRecord(time=at, kind="instance.ejected", subject=subject, reason="test")


async def test_events_are_kept_while_the_control_plane_is_down_and_sent_once_it_is_back() -> None:
    """A failed push keeps the drained events; the next push carries them (once), and counters as they are."""
    proxy = Proxy()
    proxy.stats = Stats()
    cp = FlakyControlPlane(failures=1)
    reporter = Reporter(cp, "gw", LocalMetrics(proxy, started_at=5.0))  # type: ignore[arg-type]
    proxy.events.append(event("s/a", 1.0))
    assert not await reporter.push()
    proxy.events.append(event("s/b", 2.0))
    assert await reporter.push()
    assert await reporter.push()
    first, second = (r for _, r in cp.reports)
    assert [e["subject"] for e in first["events"]] == ["s/a", "s/b"] and second["events"] == []
    assert first["started_at"] == 5.0 and first["workers"] == 1 and reporter.sent == 2
    await proxy.stop(grace=0)


def logged(seq: int, subject: str) -> dict[str, Any]:
    return {"time": float(seq), "kind": "k", "subject": subject, "reason": "x"}


def worker_file(directory: Path, pid: int, ok: int, connections: int, events: list[tuple[int, str]]) -> None:
    row = [0] * ROW_LEN
    row[2] = ok
    data = {"pid": pid, "started_at": 10.0 + pid, "workers": 1, "connections": connections,
            "upstream": {"idle": 2, "busy": 1}, "rows": [["r", "s/a", row]],
            "policies": {"r": {"breaker": "open", "rate_limited": 1, "shed": 0, "retries": 0, "ejected": ["s/a"]}},
            "events": [], "event_log": [[seq, logged(seq, s)] for seq, s in events]}  # fmt: skip
    (directory / f"worker-{pid}.json").write_text(json.dumps(data))


def test_worker_files_sum_counters_of_all_and_gauges_of_the_live_ones(tmp_path: Path) -> None:
    """A dead worker's counters stay in the sum; its connections, pool and breaker state do not."""
    worker_file(tmp_path, 101, ok=4, connections=5, events=[])
    worker_file(tmp_path, 102, ok=6, connections=7, events=[])
    total = WorkerMetrics(tmp_path, live=lambda: [102]).current()
    assert total["rows"][0][2][2] == 10
    assert (total["workers"], total["connections"], total["upstream"]) == (1, 7, {"idle": 2, "busy": 1})
    assert total["policies"]["r"]["breaker"] == "open" and total["policies"]["r"]["rate_limited"] == 2
    assert "event_log" not in total


def test_worker_events_are_taken_once_in_time_order(tmp_path: Path) -> None:
    """Each worker's numbered events are handed out once, merged by time; later ones come next time."""
    metrics = WorkerMetrics(tmp_path, live=lambda: [1, 2])
    worker_file(tmp_path, 1, 0, 0, [(1, "a"), (3, "c")])
    worker_file(tmp_path, 2, 0, 0, [(2, "b")])
    assert [e["subject"] for e in metrics.take_events()] == ["a", "b", "c"]
    worker_file(tmp_path, 1, 0, 0, [(1, "a"), (3, "c"), (4, "d")])
    assert [e["subject"] for e in metrics.take_events()] == ["d"]
    metrics.clear()
    assert list(tmp_path.glob("worker-*")) == []


def only_file(directory: Path) -> dict[str, Any]:
    (path,) = directory.glob("worker-*.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def test_a_worker_publishes_its_report_and_events_to_its_file(tmp_path: Path) -> None:
    """publish_worker writes worker-<pid>.json with the report and the drained events, and again on stop."""
    proxy = Proxy()
    proxy.stats = Stats()
    proxy.events.append(event("s/a", 1.0))
    task = asyncio.get_running_loop().create_task(publish_worker(proxy, tmp_path, interval=0.05, started_at=3.0))
    await asyncio.sleep(0.1)
    proxy.events.append(event("s/b", 2.0))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    data = only_file(tmp_path)
    assert data["started_at"] == 3.0 and [s for s, e in data["event_log"]] == [1, 2]
    assert [e["subject"] for _, e in data["event_log"]] == ["s/a", "s/b"] and not proxy.events
    await proxy.stop(grace=0)
