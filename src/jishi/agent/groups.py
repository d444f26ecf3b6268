"""Process groups of running instances, remembered on disk so that a restarted agent ends what a killed one left.

PR_SET_PDEATHSIG reaches only an instance's own process: when the agent is SIGKILLed its instances die, but their
children (the `sleep` of a shell script, a server's workers) are re-parented to init and live on, holding ports
and files. So the agent records every running instance's process group in `data_dir/instances.json` — the group
id (the instance's pid: each instance leads its own session) and the leader's start time from
`/proc/<pid>/stat` — and at start, before it runs anything, SIGKILLs every recorded group that still has members.
A leader that is alive with another start time means the pid was reused by an unrelated process: left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from jishi.statefile import write_json

__all__ = ["GroupLedger", "end_leftovers", "start_time"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Stat:
    state: str
    pgid: int
    sid: int
    start: int  # clock ticks after boot (field 22)


def _stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(") ", 1)[1].split()  # the name in parentheses may hold spaces; fields 3.. follow
    return _Stat(fields[0], int(fields[2]), int(fields[3]), int(fields[19]))


def start_time(pid: int) -> int | None:
    """The start time of process `pid` (field 22 of /proc/<pid>/stat), None if it does not exist."""
    stat = _stat(pid)
    return None if stat is None else stat.start


def _members(group: int) -> set[int]:
    """Process groups with live (non-zombie) processes in process group or session `group`."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat.state != "Z" and group in (stat.pgid, stat.sid):
                found.add(stat.pgid)
    return found


class GroupLedger:
    """The running instances' process groups, mirrored to a JSON file on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._groups: dict[str, dict[str, object]] = {}

    def add(self, instance_id: str, pid: int) -> None:
        """Instance `instance_id` now runs as process (and group) `pid`."""
        self._groups[instance_id] = {"pgid": pid, "start": start_time(pid)}
        self._save()

    def remove(self, instance_id: str) -> None:
        """The instance's group was killed: nothing of it is left to clean up."""
        if self._groups.pop(instance_id, None) is not None:
            self._save()

    def _save(self) -> None:
        try:
            write_json(self.path, {"instances": self._groups}, durable=False)
        except OSError as exc:
            log.error("cannot record instance process groups in %s: %s", self.path, exc)


def _read(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text())
        groups = data["instances"]
        assert isinstance(groups, dict)
        return groups
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        log.error("ignoring unreadable %s (%s); leftovers of a previous run, if any, are not cleaned up", path, exc)
        return {}


def end_leftovers(path: Path, *, within: float = 2.0) -> int:
    """SIGKILL the process groups recorded in `path` by a previous run that still have members; returns how many
    groups were killed. Blocks up to `within` seconds until they are gone (run it in a thread)."""
    own = {os.getpgid(0), os.getsid(0)}
    killed: set[int] = set()
    for instance_id, record in _read(path).items():
        pgid, start = record.get("pgid"), record.get("start")
        if not isinstance(pgid, int) or pgid in own:
            continue
        leader = start_time(pgid)
        if leader is not None and leader != start:
            continue  # the pid now belongs to another process
        groups = _members(pgid) - own
        if groups:
            log.warning(
                "instance %s of a previous run left processes behind (process group %d); killing them",
                instance_id,
                pgid,
            )
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
            killed.add(group)
    deadline = time.monotonic() + within
    while killed and any(_members(g) for g in killed) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        write_json(path, {"instances": {}}, durable=False)
    except OSError as exc:
        log.error("cannot clear %s: %s", path, exc)
    return len(killed)
