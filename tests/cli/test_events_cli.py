"""`jishi events` and `jishi silence` against a real control-plane process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jishi.api import HttpControlPlane
from jishi.cli.events import event_line
from jishi.cli.main import app
from jishi.cli.silence import parse_match
from jishi.registry.model import EventRecord
from jishi.testing import ProcessGroup, free_port, wait_for_port

runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One control plane for the module, with three events recorded; its URL."""
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    group = ProcessGroup(tmp / "logs")
    try:
        proc = group.python("server", "-m", "jishi.server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp))
        wait_for_port(port, timeout=30)
        assert proc.alive(), proc.log()
        url = f"http://127.0.0.1:{port}"

        async def setup() -> None:
            async with HttpControlPlane(url) as cp:
                for kind, subject, level in (
                    ("instance.started", "web/web-1", "info"),
                    ("instance.exited", "web/web-1", "error"),
                    ("service.scaled", "api", "info"),
                ):
                    event = EventRecord.model_validate(
                        {"time": 1_763_900_000.5, "kind": kind, "subject": subject, "reason": f"{kind} here"}
                        | {"level": level}
                    )
                    await cp.record_event(event)

        asyncio.run(setup())
        yield url
    finally:
        group.stop_all()


def jishi(url: str, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--control-plane", url, *args])


def test_event_line_has_time_level_kind_subject_reason() -> None:
    """One event is one line: local time with ms, the level upper-cased and coloured, kind, subject, reason."""
    event = EventRecord(time=1_763_900_000.25, kind="instance.exited", subject="web/w1", reason="exit 3", level="error")
    line = event_line(event)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_763_900_000.25)) + ".250"
    assert line.startswith(stamp) and "[bold red]ERROR" in line
    assert "instance.exited" in line and line.endswith("web/w1  exit 3")


def test_events_lists_filters_and_prints_json(server: str) -> None:
    """`jishi events` prints every event oldest first; --kind/--subject/--limit filter; --json is one record a line."""
    result = jishi(server, "events")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[3] for line in lines] == ["instance.started", "instance.exited", "service.scaled"]
    assert "ERROR" in lines[1] and "instance.exited here" in lines[1]
    assert len(jishi(server, "events", "--kind", "instance").output.splitlines()) == 2
    assert "service.scaled" in jishi(server, "events", "--subject", "api").output
    assert len(jishi(server, "events", "-n", "1").output.splitlines()) == 1
    records = [json.loads(x) for x in jishi(server, "events", "--json", "--kind", "service").output.splitlines()]
    assert [(r["kind"], r["subject"]) for r in records] == [("service.scaled", "api")]


def test_events_follow_prints_new_events_as_they_come(server: str, tmp_path: Path) -> None:
    """`jishi events -f` (a real process) prints the past events, then one recorded while it runs."""
    argv = [sys.executable, "-m", "jishi", "--control-plane", server, "events", "-f", "--json", "--kind", "deploy"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        assert proc.stdout is not None
        stdout = proc.stdout
        try:
            time.sleep(3.0)  # the process starts and opens its stream

            async def record_and_read() -> str:
                async with HttpControlPlane(server) as cp:
                    event = EventRecord(time=time.time(), kind="deploy.done", subject="web", reason="deployed v2")
                    await cp.record_event(event)
                return await asyncio.wait_for(asyncio.to_thread(stdout.readline), 30)

            line = asyncio.run(record_and_read())
            assert json.loads(line)["reason"] == "deployed v2"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_parse_match_plain_and_rule_matchers() -> None:
    """k=v becomes k="v"; text with quotes or =~ is taken as written; a bad matcher is a ValueError."""
    assert parse_match(["service=catalog", "team=shop"]) == 'service="catalog",team="shop"'
    assert parse_match(['alertname=~"High.*"']) == 'alertname=~"High.*"'
    with pytest.raises(ValueError):
        parse_match(["service"])


def test_silence_add_list_rm(server: str) -> None:
    """`jishi silence add` makes one (printed id), `list` shows it with its comment, `rm` ends it."""
    added = jishi(server, "silence", "add", "--match", "service=web", "--for", "2h", "-c", "deploying web")
    assert added.exit_code == 0, added.output
    silence_id = added.output.split()[1].rstrip(":")
    listed = jishi(server, "silence", "list")
    assert silence_id in listed.output and 'service="web"' in listed.output and "deploying web" in listed.output
    as_json = json.loads(jishi(server, "silence", "list", "--json").output)
    [spec] = [s for s in as_json if s["id"] == silence_id]
    assert spec["ends_at"] - spec["starts_at"] == 7200
    assert jishi(server, "silence", "rm", silence_id).exit_code == 0
    assert silence_id not in jishi(server, "silence", "list").output
    gone = jishi(server, "silence", "rm", silence_id)
    assert gone.exit_code == 1 and "does not exist" in gone.output


def test_silence_add_refuses_bad_input(server: str) -> None:
    """A bad --for or --match exits 2 with a message."""
    assert jishi(server, "silence", "add", "--match", "service=web", "--for", "soon").exit_code == 2
    assert jishi(server, "silence", "add", "--match", "service").exit_code == 2
