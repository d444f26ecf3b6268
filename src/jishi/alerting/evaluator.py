"""The alert evaluator: the asyncio shell around `jishi.core.alerts.AlertBook`.

Every `interval` seconds it asks its metric sources for the metrics the rules name, feeds each rule's series
to the book, and sends the notifications the book decides through every notifier. Between evaluations it
wakes exactly when the book has a notification due (end of a group wait, a repeat), so timings are the
policy's, not rounded up to the interval. One task, owned: `start()` / `aclose()`, or `async with`.

A rule whose metric no source provides (the built-in error-rate and latency rules, until the metrics layer
exists) is *inactive*: logged once, listed by `inactive_rules()`, never evaluated. When a source fails, the
rules it may have answered skip that round and keep their state. A notifier that fails is logged with what
went wrong; the others still get the notification.

Times given to the book (and shown in notifications) come from `clock`, unix seconds by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any

from jishi.alerting.expr import WindowHistory
from jishi.alerting.notify import LogNotifier, Notifier, alert_json
from jishi.alerting.rules import AlertingConfig, AlertRule, silence_json
from jishi.alerting.smtp import SmtpNotifier
from jishi.alerting.sources import MetricSource, Series
from jishi.alerting.webhook import WebhookNotifier
from jishi.core.alerts import Alert, AlertBook, Change, Matcher, MatchOp, Notification, NotifyPolicy, Silence
from jishi.errors import NotificationError

__all__ = ["AlertEvaluator", "build_notifiers"]

log = logging.getLogger(__name__)


def build_notifiers(config: AlertingConfig) -> list[Notifier]:
    """The notifiers an `alerting:` section asks for: its webhooks, its e-mail targets and (if on) the log."""
    notifiers: list[Notifier] = [
        WebhookNotifier(w.url, timeout=w.timeout, retries=w.retries, backoff=w.backoff, headers=w.headers)
        for w in config.webhooks
    ]
    notifiers += [
        SmtpNotifier(
            e.host,
            e.port,
            sender=e.sender,
            to=e.to,
            username=e.username,
            password=e.password,
            starttls=e.starttls,
            ssl=e.ssl,
            timeout=e.timeout,
        )
        for e in config.email
    ]
    if config.log:
        notifiers.append(LogNotifier())
    return notifiers


class AlertEvaluator:
    def __init__(
        self,
        rules: Sequence[AlertRule],
        sources: Sequence[MetricSource],
        notifiers: Sequence[Notifier],
        *,
        policy: NotifyPolicy | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[Change], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the evaluation interval must be positive (got {interval})")
        self.rules = list(rules)
        self.book = AlertBook(policy)
        self.interval = interval
        self._sources, self._notifiers = list(sources), list(notifiers)
        self._clock, self._on_change = clock, on_change
        self._history = WindowHistory()
        self._inactive: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(
        cls,
        config: AlertingConfig,
        sources: Sequence[MetricSource],
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[Change], None] | None = None,
    ) -> AlertEvaluator:
        return cls(
            config.all_rules(),
            sources,
            build_notifiers(config),
            policy=config.policy(),
            interval=config.interval,
            clock=clock,
            on_change=on_change,
        )

    # --- one round
    async def evaluate_once(self) -> list[Notification]:
        """Evaluate every rule now, then send what is due; returns the notifications sent."""
        now = self._clock()
        data, complete = await self._collect({r.selector.metric for r in self.rules})
        windows: dict[str, float] = {}
        for rule in self.rules:
            if rule.selector.window is not None:
                metric = rule.selector.metric
                windows[metric] = max(windows.get(metric, 0.0), rule.selector.window)
        for metric, keep in windows.items():
            if metric in data:
                self._history.record(metric, data[metric], now, keep)
        for rule in self.rules:
            self._evaluate_rule(rule, data, complete, now)
        return await self.deliver_due()

    def _evaluate_rule(self, rule: AlertRule, data: Mapping[str, Series], complete: bool, now: float) -> None:
        sel = rule.selector
        series = data.get(sel.metric)
        if series is None:
            if complete and rule.name not in self._inactive:
                self._inactive.add(rule.name)
                log.info("alert rule %s is inactive: no metric source provides %r", rule.name, sel.metric)
            return
        if rule.name in self._inactive:
            self._inactive.discard(rule.name)
            log.info("alert rule %s is active: metric %r is now provided", rule.name, sel.metric)
        values = series if sel.window is None else self._history.increase(sel.metric, sel.window, now)
        for change in self.book.evaluate(rule, sel.select(values), now):
            log.info("alert %s %s → %s: %s", rule.name, change.old, change.alert.state, change.alert.message)
            if self._on_change is not None:
                self._on_change(change)

    async def _collect(self, names: set[str]) -> tuple[dict[str, Series], bool]:
        """The series of each name from the first source that knows it; False when a source failed."""
        out: dict[str, Series] = {}
        complete = True
        for source in self._sources:
            missing = names - out.keys()
            if not missing:
                break
            try:
                found = await source.collect(missing)
            except Exception:
                log.exception("metric source %r failed; rules it may answer keep their state this round", source)
                complete = False
                continue
            out.update({k: v for k, v in found.items() if k in missing})
        return out, complete

    async def deliver_due(self) -> list[Notification]:
        """Send the notifications the book has due now (without evaluating); returns them."""
        notes = self.book.tick(self._clock())
        for note in notes:
            await asyncio.gather(*(self._send(n, note) for n in self._notifiers))
        return notes

    async def _send(self, notifier: Notifier, note: Notification) -> None:
        try:
            await notifier.send(note)
        except NotificationError as exc:
            log.error("alert notification lost: %s", exc)
        except Exception:
            log.exception("alert notifier %r failed on a %s notification", notifier, note.status)

    # --- the loop
    async def run(self) -> None:
        """Evaluate every `interval`, waking in between when a notification falls due. Runs until cancelled."""
        next_eval = self._clock()
        while True:
            now = self._clock()
            try:
                if now >= next_eval:
                    next_eval = max(next_eval + self.interval, now)
                    await self.evaluate_once()
                else:
                    await self.deliver_due()
            except Exception:
                log.exception("alert evaluation failed; trying again at the next interval")
            due = self.book.next_due()
            wake = next_eval if due is None else min(next_eval, due)
            await asyncio.sleep(max(0.0, wake - self._clock()))

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the alert evaluator is already running")
        self._task = asyncio.create_task(self.run(), name="jishi-alert-evaluator")

    async def aclose(self) -> None:
        """Stop the loop (awaiting it) and close the notifiers that hold connections."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for notifier in self._notifiers:
            close = getattr(notifier, "aclose", None)
            if close is not None:
                await close()

    async def __aenter__(self) -> AlertEvaluator:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- silences and reading
    def silence(
        self,
        matchers: Mapping[str, str] | Collection[Matcher],
        *,
        duration: float,
        starts_at: float | None = None,
        comment: str = "",
        created_by: str = "",
    ) -> Silence:
        """Silence the alerts matching every matcher (a mapping means label = value) for `duration` seconds."""
        if isinstance(matchers, Mapping):
            matchers = [Matcher(k, MatchOp.EQ, v) for k, v in matchers.items()]
        start = self._clock() if starts_at is None else starts_at
        silence = Silence(uuid.uuid4().hex[:12], tuple(matchers), start, start + duration, comment, created_by)
        self.book.add_silence(silence)
        log.info("silence %s until %.0f: %s (%s)", silence.id, silence.ends_at, matchers, comment or "no comment")
        return silence

    def add_silence(self, silence: Silence) -> None:
        """Add (or replace, by id) a silence made elsewhere, e.g. one kept in the store."""
        self.book.add_silence(silence)

    def unsilence(self, silence_id: str) -> bool:
        return self.book.remove_silence(silence_id)

    def silences(self) -> list[Silence]:
        return self.book.silences()

    def alerts(self) -> list[Alert]:
        return self.book.alerts()

    def inactive_rules(self) -> list[str]:
        return sorted(self._inactive)

    def snapshot(self) -> dict[str, Any]:
        """The alerting state as JSON for an API, the dashboard or `jishi status`."""
        now = self._clock()
        return {
            "at": now,
            "alerts": [{**alert_json(a), "silenced": self.book.silenced(a, now)} for a in self.book.alerts()],
            "silences": [silence_json(s) for s in self.book.silences()],
            "inactive_rules": self.inactive_rules(),
        }
