"""Alerting end to end with real processes: a control-plane server and an agent running a service's instances.

Killing every instance of the service (and keeping the new ones unhealthy) fires NoHealthyInstance: a JSON
webhook reaches a local HTTP receiver and an e-mail reaches a local SMTP server (aiosmtpd); once the instances
pass their checks again both are told it resolved. The event log tells the same story. Then the restart
action restarts a real instance (new pid) through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from jishi.api import HttpControlPlane
from jishi.registry import Health, Instance, ServiceSpec
from jishi.testing import ProcessGroup, free_port, wait_for_port

pytestmark = pytest.mark.slow

SERVICE = Path(__file__).resolve().parents[1] / "agent" / "service.py"


class Webhook:
    """A local HTTP server that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Webhook:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = next(
                int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length")
            )
            self.bodies.append(json.loads(await reader.readexactly(length)))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class Inbox:
    """aiosmtpd handler keeping every message (aiosmtpd runs it in its own thread)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        msg = message_from_bytes(content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append(msg)
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(m["Subject"]) for m in self.messages]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def cluster(procs: ProcessGroup, tmp_path: Path) -> AsyncIterator[HttpControlPlane]:
    """A control-plane server and an agent as real processes; the client talks to the server."""
    port = free_port()
    procs.python("server", "-m", "jishi.server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "cp"))
    await asyncio.to_thread(wait_for_port, port, timeout=30)
    url = f"http://127.0.0.1:{port}"
    procs.python("agent", "-m", "jishi.agent", "--control-plane", url, "--data-dir", str(tmp_path / "agent"))
    cp = HttpControlPlane(url, timeout=5.0)
    try:
        yield cp
    finally:
        await cp.aclose()


async def until(predicate: Any, within: float, what: str) -> None:
    """Poll the async predicate every 50 ms until it holds; AssertionError naming `what` after `within` s."""
    for _ in range(int(within / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


async def healthy(cp: HttpControlPlane) -> list[Instance]:
    return [i for i in await cp.list_instances("web") if i.health is Health.PASSING and not i.draining]


def web_spec(fail_file: Path) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "name": "web",
            "command": [sys.executable, str(SERVICE), "{port}"],
            "instances": 2,
            "env": {"HEALTH_FAIL_FILE": str(fail_file)},
            "health_check": {"interval": 0.2, "timeout": 0.5, "rise": 1, "fall": 1},
            "restart": {"initial_delay": 0.1, "max_delay": 0.5, "jitter": 0.0},
            "drain_seconds": 0.1,
            "stop_timeout": 2.0,
        }
    )


async def test_killing_instances_fires_webhook_and_email_then_resolves(
    cluster: HttpControlPlane, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    """SIGKILL every web instance (new ones unhealthy): NoHealthyInstance fires by webhook and e-mail; when the
    instances pass again both get the resolve; events record exits, restarts and the alert."""
    cp = cluster
    inbox, smtp_port = smtp
    fail_file = tmp_path / "unhealthy"
    await cp.put_service(web_spec(fail_file))

    async def two_healthy() -> bool:
        return len(await healthy(cp)) == 2

    await until(two_healthy, 60, "2 healthy web instances")
    async with Webhook() as hook:
        config = {
            "interval": "200ms",
            "group_wait": "200ms",
            "rules": [
                {
                    "name": "NoHealthyInstance",  # the built-in rule, with a shorter `for`
                    "expr": "healthy_instances",
                    "op": "<",
                    "threshold": 1,
                    "for": "1s",
                    "severity": "critical",
                    "message": "service {labels.service} has no healthy instance",
                }
            ],
            "webhooks": [{"url": f"http://127.0.0.1:{hook.port}/hook", "retries": 1}],
            "email": [{"host": "127.0.0.1", "port": smtp_port, "sender": "jishi@test", "to": ["ops@test"]}],
        }
        async with httpx.AsyncClient(base_url=cp.base_url) as http:
            assert (await http.put("/v1/alerting", json=config)).json() == {"changed": True}
        await asyncio.sleep(0.6)  # a few evaluations on the new settings: all quiet
        assert hook.bodies == [] and inbox.subjects() == []

        victims = await healthy(cp)
        fail_file.touch()
        for inst in victims:
            assert inst.pid is not None
            os.kill(inst.pid, signal.SIGKILL)

        async def fired() -> bool:
            return any(b["status"] == "firing" for b in hook.bodies) and bool(inbox.subjects())

        await until(fired, 30, "the firing webhook and e-mail")
        firing = next(b for b in hook.bodies if b["status"] == "firing")
        [alert] = firing["alerts"]
        assert (alert["rule"], alert["labels"]["service"], alert["severity"]) == (
            "NoHealthyInstance",
            "web",
            "critical",
        )
        assert alert["message"] == "service web has no healthy instance"
        assert inbox.subjects()[0] == "[jishi] FIRING (1): NoHealthyInstance"
        alerts = (await cp.alerts())["alerts"]
        assert [(a["name"], a["state"]) for a in alerts] == [("NoHealthyInstance", "firing")]

        fail_file.unlink()

        async def resolved() -> bool:
            return any(b["status"] == "resolved" for b in hook.bodies) and len(inbox.subjects()) >= 2

        await until(resolved, 30, "the resolving webhook and e-mail")
        assert inbox.subjects()[-1] == "[jishi] RESOLVED (1): NoHealthyInstance"
        assert (await cp.alerts())["alerts"] == []

    kinds = [e.kind for e in await cp.events(limit=1000)]
    for kind in ("instance.started", "instance.exited", "instance.restarted", "alert.firing", "alert.resolved"):
        assert kind in kinds, kind
    assert kinds.index("instance.exited") < kinds.index("alert.firing") < kinds.index("alert.resolved")


async def test_restart_action_restarts_a_real_instance(cluster: HttpControlPlane, tmp_path: Path) -> None:
    """POST /v1/instances/web/{id}/restart: 202, then the same instance id runs with a new pid and passes."""
    cp = cluster
    spec = web_spec(tmp_path / "never")
    await cp.put_service(spec.model_copy(update={"instances": 1}))

    async def one_healthy() -> bool:
        return len(await healthy(cp)) == 1

    await until(one_healthy, 60, "a healthy web instance")
    [before] = await healthy(cp)
    async with httpx.AsyncClient(base_url=cp.base_url) as http:
        reply = await http.post(f"/v1/instances/web/{before.id}/restart", json={"reason": "test"})
    assert (reply.status_code, reply.json()["restarting"]) == (202, before.id)

    async def new_pid() -> bool:
        now = await healthy(cp)
        return len(now) == 1 and now[0].id == before.id and now[0].pid != before.pid

    await until(new_pid, 30, "the instance running again with a new pid")
    kinds = [e.kind for e in await cp.events(subject=f"web/{before.id}", limit=100)]
    after = kinds[kinds.index("instance.restart_requested") :]
    assert after[:3] == ["instance.restart_requested", "instance.stopped", "instance.restarted"]
