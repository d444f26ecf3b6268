"""Alerting in the control plane: the evaluator run on the stored settings, silences, and their API.

    GET    /v1/alerts          {"alerts": [{name, state, since, labels, message, value, severity, silenced}],
                                "silences": [...], "inactive_rules": [...]}   pending and firing alerts
    GET    /v1/alerting        {"config": AlertingConfig | null}   the settings in force (secrets masked)
    PUT    /v1/alerting        AlertingConfig → {"changed": bool}  (`jishi up` sends the file's `alerting:`)
    GET    /v1/silences        {"silences": [SilenceSpec, ...]}
    POST   /v1/silences        {"matchers": {label: value} | "text", "duration": s, "comment"} → SilenceSpec (id)
    DELETE /v1/silences/{id}

`AlertService` (owned by the server; `await run()` until cancelled) follows `/jishi/config/alerting` and
`/jishi/silences/` in the store. It runs one `AlertEvaluator` on the settings in force — the defaults (built-in
rules, log notifier) until settings are stored — and replaces it when they change (alert states start afresh).
Silences are kept in the store, so they survive restarts and reach whichever evaluator runs. Every alert that
starts firing or resolves becomes an event (`alert.firing`, `alert.resolved`) through an `EventBuffer`.
Metric sources: the registry, and the gateways' stats when the server has a stats board.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from jishi.alerting import AlertEvaluator, AlertingConfig, MetricSource, RegistrySource, SilenceSpec
from jishi.alerting.notify import alert_json
from jishi.api import wire
from jishi.core.alerts import AlertState, Change, Silence
from jishi.registry import Registry
from jishi.registry.events import EventBuffer
from jishi.registry.follow import follow
from jishi.registry.model import ALERTING_CONFIG, SILENCES, EventRecord
from jishi.store import EventType, KeyValue

__all__ = ["AlertService", "alert_event", "masked", "router"]

log = logging.getLogger(__name__)


def alert_event(change: Change) -> EventRecord | None:
    """The event of an alert's state change: alert.firing or alert.resolved (others are not events)."""
    alert = change.alert
    if alert.state not in (AlertState.FIRING, AlertState.RESOLVED):
        return None
    labels = alert.label_map
    firing = alert.state is AlertState.FIRING
    level = ("error" if labels.get("severity") == "critical" else "warning") if firing else "info"
    subject = labels.get("route") or labels.get("service") or alert.rule
    return EventRecord(
        time=change.at,
        kind=f"alert.{alert.state.value}",
        subject=subject,
        reason=f"{alert.rule}: {alert.message}" if firing else f"{alert.rule} resolved: {alert.message}",
        level=level,
        labels=labels,
    )


class AlertService:
    def __init__(
        self,
        registry: Registry,
        *,
        sources: Sequence[MetricSource] = (),
        clock: Callable[[], float] = time.time,
        interval: float | None = None,
    ) -> None:
        """`sources` come after the registry's own; `interval` overrides the settings' (for tests)."""
        self.registry = registry
        self.sources: list[MetricSource] = [RegistrySource(registry), *sources]
        self.config = AlertingConfig()
        self.evaluator: AlertEvaluator | None = None
        self.events = EventBuffer(registry)
        self._clock, self._interval = clock, interval
        self._silences: dict[str, Silence] = {}
        self._config_changed = asyncio.Event()
        self.ready = asyncio.Event()  # an evaluator runs on the stored settings

    async def run(self) -> None:
        """Follow the settings and silences and run the evaluator, until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.events.run(), name="jishi-alert-events")
                tg.create_task(
                    follow(
                        self.registry,
                        ALERTING_CONFIG,
                        on_snapshot=self._config_snapshot,
                        on_event=lambda e: self._config_kv(e.kv if e.type is EventType.PUT else None),
                        name="alerting settings",
                    )
                )
                tg.create_task(
                    follow(
                        self.registry,
                        SILENCES,
                        on_snapshot=self._silences_snapshot,
                        on_event=lambda e: self._silence_kv(e.kv, deleted=e.type is EventType.DELETE),
                        name="silences",
                    )
                )
                while True:
                    await self._config_changed.wait()
                    self._config_changed.clear()
                    await self._restart_evaluator()
        finally:
            await self._stop_evaluator()
            await self.events.flush(1.0)

    # --- settings
    def _config_snapshot(self, revision: int, kvs: list[KeyValue]) -> None:
        self._config_kv(kvs[0] if kvs else None, initial=not self.ready.is_set())

    def _config_kv(self, kv: KeyValue | None, *, initial: bool = False) -> None:
        if kv is None:
            config = AlertingConfig()
        else:
            try:
                config = AlertingConfig.model_validate_json(kv.value)
            except ValueError as exc:
                log.error("the stored alerting settings are not valid (%s); keeping the ones in force", exc)
                return
        if config != self.config or initial:
            self.config = config
            self._config_changed.set()

    async def _restart_evaluator(self) -> None:
        await self._stop_evaluator()
        evaluator = AlertEvaluator.from_config(self.config, self.sources, clock=self._clock, on_change=self._changed)
        if self._interval is not None:
            evaluator.interval = self._interval
        for silence in self._silences.values():
            evaluator.add_silence(silence)
        self.evaluator = evaluator
        evaluator.start()
        rules = ", ".join(r.name for r in evaluator.rules) or "none"
        log.info("alert evaluator running every %.1f s; rules: %s", evaluator.interval, rules)
        self.ready.set()

    async def _stop_evaluator(self) -> None:
        evaluator, self.evaluator = self.evaluator, None
        if evaluator is not None:
            await evaluator.aclose()

    def _changed(self, change: Change) -> None:
        event = alert_event(change)
        if event is not None:
            self.events.emit(event)

    # --- silences
    def _silences_snapshot(self, revision: int, kvs: list[KeyValue]) -> None:
        for sid in list(self._silences):
            self._drop_silence(sid)
        for kv in kvs:
            self._silence_kv(kv, deleted=False)

    def _silence_kv(self, kv: KeyValue, *, deleted: bool) -> None:
        sid = kv.key.decode()[len(SILENCES) :]
        if deleted:
            self._drop_silence(sid)
            return
        try:
            silence = SilenceSpec.model_validate_json(kv.value).to_silence()
        except ValueError as exc:
            log.error("ignoring an invalid silence at %s: %s", kv.key.decode(errors="replace"), exc)
            return
        self._silences[sid] = silence
        if self.evaluator is not None:
            self.evaluator.add_silence(silence)

    def _drop_silence(self, sid: str) -> None:
        self._silences.pop(sid, None)
        if self.evaluator is not None:
            self.evaluator.unsilence(sid)

    # --- reading
    def snapshot(self) -> dict[str, Any]:
        """Pending and firing alerts, the silences in force and the inactive rules (GET /v1/alerts)."""
        evaluator = self.evaluator
        if evaluator is None:
            return {"alerts": [], "silences": [], "inactive_rules": []}
        now = self._clock()
        alerts = []
        for alert in evaluator.book.alerts([AlertState.PENDING, AlertState.FIRING]):
            data = alert_json(alert)
            alerts.append(
                {
                    "name": alert.rule,
                    "state": alert.state.value,
                    "since": alert.fired_at if alert.state is AlertState.FIRING else alert.active_since,
                    "labels": data["labels"],
                    "message": alert.message,
                    "value": alert.value,
                    "severity": data["severity"],
                    "silenced": evaluator.book.silenced(alert, now),
                }
            )
        snap = evaluator.snapshot()
        return {"alerts": alerts, "silences": snap["silences"], "inactive_rules": snap["inactive_rules"]}


# ---- the router ---------------------------------------------------------------------------------------------


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


Reg = Annotated[Registry, Depends(_registry)]
router = APIRouter(prefix="/v1")


@router.get("/alerts", tags=["alerts"], summary="Pending and firing alerts, and the silences in force")
async def alerts(request: Request, registry: Reg) -> dict[str, Any]:
    service: AlertService | None = getattr(request.app.state, "alerts", None)
    if service is not None:
        return service.snapshot()
    silences = [s.model_dump() for s in await registry.list_silences()]
    return {"alerts": [], "silences": silences, "inactive_rules": []}


MASK = "********"


def masked(config: AlertingConfig) -> dict[str, Any]:
    """The settings as JSON with their secrets (SMTP passwords, webhook header values) masked."""
    doc = config.model_dump(mode="json", by_alias=True)
    for email in doc["email"]:
        if email.get("password"):
            email["password"] = MASK
    for hook in doc["webhooks"]:
        hook["headers"] = dict.fromkeys(hook["headers"], MASK)
    return doc


@router.get(
    "/alerting",
    tags=["alerts"],
    summary="The alerting settings in force (null: the defaults); SMTP passwords and webhook headers masked",
)
async def get_alerting(registry: Reg) -> dict[str, Any]:
    config = await registry.get_alerting()
    return {"config": None if config is None else masked(config)}


@router.put("/alerting", tags=["alerts"], summary="Replace the alerting settings (the `alerting:` of jishi.yaml)")
async def put_alerting(registry: Reg, config: Annotated[dict[str, Any], Body()]) -> dict[str, bool]:
    return {"changed": await registry.put_alerting(config)}


@router.get("/silences", tags=["alerts"], summary="The silences in the store (ended ones are swept)")
async def list_silences(registry: Reg) -> dict[str, list[SilenceSpec]]:
    return {"silences": await registry.list_silences()}


@router.post("/silences", tags=["alerts"], status_code=201, summary="Silence the alerts matching some labels")
async def add_silence(registry: Reg, body: wire.SilenceRequest) -> SilenceSpec:
    return await registry.add_silence(
        body.matchers, duration=body.duration, comment=body.comment, created_by=body.created_by
    )


@router.delete("/silences/{silence_id}", tags=["alerts"], status_code=204, summary="End a silence now")
async def remove_silence(registry: Reg, silence_id: str) -> Response:
    await registry.remove_silence(silence_id)
    return Response(status_code=204)
