"""Alerts as a pure state machine: rule evaluations in, state changes and notifications out.

Theory of operation
-------------------
An *alert* is one rule applied to one series of the rule's metric (one label set). Each evaluation round the
shell hands `AlertBook.evaluate` the value of every series it found for a rule; the condition
`value <op> threshold` is the input of that alert's state machine, kept as the table `_TABLE`:

    INACTIVE ──true──▶ PENDING ──true for `for` seconds──▶ FIRING ──false──▶ RESOLVED ──true──▶ PENDING
                          └──false──▶ INACTIVE (forgotten)

A series that is no longer reported counts as false. With `for: 0` an alert passes PENDING and fires in the same
evaluation. RESOLVED alerts are kept `keep_resolved` seconds for people to see, then forgotten.

Notifications are decided here too, by `AlertBook.tick(now)`:
- alerts are grouped by the values of the policy's `group_by` labels (`alertname` is the rule's name);
- a change in a group (an alert starts firing, or a notified one resolves) schedules the group's next
  notification `group_wait` seconds later, so changes within that wait go out together as ONE notification,
  listing every firing alert of the group and those resolved since the group's last notification;
- while any alert of the group fires, the notification is repeated every `repeat_interval` seconds;
- an alert's resolve is notified only if its firing was.

Silences match alerts by label matchers between `starts_at` and `ends_at`. A silenced alert still changes state
(and its changes are still returned); it is only left out of the notifications made while the silence holds.

All time is `now: float` (seconds, the shell's clock); nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import enum
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

__all__ = [
    "Alert",
    "AlertBook",
    "AlertState",
    "Change",
    "Labels",
    "MatchOp",
    "Matcher",
    "Notification",
    "NotifyPolicy",
    "Op",
    "RuleLike",
    "Silence",
    "labelset",
    "render",
]

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: hashable and canonical


def labelset(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


class AlertState(enum.StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class _Gate(enum.Enum):
    NONE = "none"  # move at once
    FOR = "for"  # only once the condition has held `for` seconds


_TABLE: dict[tuple[AlertState, bool], tuple[AlertState, _Gate]] = {
    (AlertState.INACTIVE, True): (AlertState.PENDING, _Gate.NONE),
    (AlertState.INACTIVE, False): (AlertState.INACTIVE, _Gate.NONE),
    (AlertState.PENDING, True): (AlertState.FIRING, _Gate.FOR),
    (AlertState.PENDING, False): (AlertState.INACTIVE, _Gate.NONE),
    (AlertState.FIRING, True): (AlertState.FIRING, _Gate.NONE),
    (AlertState.FIRING, False): (AlertState.RESOLVED, _Gate.NONE),
    (AlertState.RESOLVED, True): (AlertState.PENDING, _Gate.NONE),
    (AlertState.RESOLVED, False): (AlertState.RESOLVED, _Gate.NONE),
}


class Op(enum.StrEnum):
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EQ = "=="
    NE = "!="


_COMPARE: dict[Op, Callable[[float, float], bool]] = {
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
}


class RuleLike(Protocol):
    """The fields of `jishi.alerting.AlertRule` this module reads."""

    @property
    def name(self) -> str: ...
    @property
    def op(self) -> Op: ...
    @property
    def threshold(self) -> float: ...
    @property
    def for_(self) -> float: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def message(self) -> str: ...
    @property
    def severity(self) -> str: ...


_PLACEHOLDER = re.compile(r"\{(value|labels\.([A-Za-z_][A-Za-z0-9_]*))\}")


def render(template: str, value: float | None, labels: Mapping[str, str]) -> str:
    """`template` with `{value}` and `{labels.NAME}` filled in; any other braces are left as written."""

    def fill(match: re.Match[str]) -> str:
        if match.group(2) is None:
            return "n/a" if value is None else f"{value:g}"
        return labels.get(match.group(2), "")

    return _PLACEHOLDER.sub(fill, template)


class MatchOp(enum.StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; a label that is absent matches as the empty string. Regexes match the whole value."""

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if self.op in (MatchOp.RE, MatchOp.NRE):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.name}{self.op}{self.value!r}: not a valid regex ({exc})") from exc

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return actual == self.value
        if self.op is MatchOp.NE:
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op is MatchOp.RE else not hit


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ValueError(f"silence {self.id}: needs at least one matcher (a silence of everything is a mistake)")
        if self.ends_at <= self.starts_at:
            raise ValueError(f"silence {self.id}: ends_at ({self.ends_at}) must be after starts_at ({self.starts_at})")

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def silences(self, labels: Mapping[str, str], now: float) -> bool:
        return self.active(now) and all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True, slots=True)
class Alert:
    """One rule on one label set, as of its last evaluation (a value: notifications hold snapshots)."""

    rule: str
    labels: Labels  # the series' labels + the rule's labels + alertname + severity
    state: AlertState = AlertState.INACTIVE
    value: float | None = None
    message: str = ""
    active_since: float | None = None  # when the condition became true (start of PENDING)
    fired_at: float | None = None
    resolved_at: float | None = None

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def key(self) -> tuple[str, Labels]:
        return (self.rule, self.labels)


@dataclass(frozen=True, slots=True)
class Change:
    """A state change of one alert (an event for the event log)."""

    alert: Alert  # after the change
    old: AlertState
    at: float


@dataclass(frozen=True, slots=True)
class Notification:
    group: Labels  # the values of the group_by labels
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    at: float
    repeat: bool = False  # nothing changed since the group's last notification

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"


@dataclass(frozen=True, slots=True)
class NotifyPolicy:
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: float = 10.0
    repeat_interval: float = 4 * 3600.0
    keep_resolved: float = 900.0

    def __post_init__(self) -> None:
        if self.group_wait < 0 or self.repeat_interval <= 0 or self.keep_resolved < 0:
            raise ValueError(
                "group_wait and keep_resolved must be ≥ 0 and repeat_interval > 0 "
                f"(got {self.group_wait}, {self.keep_resolved}, {self.repeat_interval})"
            )


@dataclass(slots=True)
class _Group:
    due: float | None = None  # when the next notification of this group goes out
    changed: bool = False  # something changed since the last notification
    resolved: dict[tuple[str, Labels], Alert] = field(default_factory=dict)  # notified, then resolved


class AlertBook:
    """Every alert of every rule, their groups and the silences."""

    def __init__(self, policy: NotifyPolicy | None = None) -> None:
        self.policy = policy or NotifyPolicy()
        self._alerts: dict[tuple[str, Labels], Alert] = {}
        self._notified: set[tuple[str, Labels]] = set()  # firing alerts that were in a sent notification
        self._groups: dict[Labels, _Group] = {}
        self._silences: dict[str, Silence] = {}

    # --- evaluation
    def evaluate(self, rule: RuleLike, samples: Mapping[Labels, float], now: float) -> list[Change]:
        """Feed the value of every series of `rule`'s metric found at `now`; returns the state changes."""
        extra = {**rule.labels, "alertname": rule.name, "severity": rule.severity}
        seen: set[tuple[str, Labels]] = set()
        changes: list[Change] = []
        for series, value in samples.items():
            labels = labelset({**dict(series), **extra})
            key = (rule.name, labels)
            seen.add(key)
            alert = self._alerts.get(key) or Alert(rule.name, labels)
            alert = replace(alert, value=value, message=render(rule.message, value, dict(labels)))
            changes += self._step(key, alert, _COMPARE[rule.op](value, rule.threshold), rule.for_, now)
        for key in [k for k in self._alerts if k[0] == rule.name and k not in seen]:
            changes += self._step(key, self._alerts[key], False, rule.for_, now)
        return changes

    def _step(self, key: tuple[str, Labels], alert: Alert, cond: bool, for_: float, now: float) -> list[Change]:
        old = alert.state
        while True:  # at most twice: INACTIVE/RESOLVED → PENDING → FIRING when `for` is 0
            target, gate = _TABLE[(alert.state, cond)]
            if target is alert.state:
                break
            if gate is _Gate.FOR and (alert.active_since is None or now < alert.active_since + for_):
                break
            alert = self._enter(alert, target, now)
        if alert.state is AlertState.INACTIVE:
            self._alerts.pop(key, None)
        else:
            self._alerts[key] = alert
        return [] if alert.state is old else [Change(alert, old, now)]

    def _enter(self, alert: Alert, state: AlertState, now: float) -> Alert:
        if state is AlertState.PENDING:
            return replace(alert, state=state, active_since=now, fired_at=None, resolved_at=None)
        if state is AlertState.FIRING:
            alert = replace(alert, state=state, fired_at=now)
            self._touch(alert, now)
            return alert
        if state is AlertState.RESOLVED:
            alert = replace(alert, state=state, resolved_at=now, active_since=None)
            if alert.key in self._notified:
                self._notified.discard(alert.key)
                self._touch(alert, now).resolved[alert.key] = alert
            return alert
        return replace(alert, state=state, active_since=None)

    def _group_of(self, alert: Alert) -> Labels:
        labels = dict(alert.labels)
        return tuple((name, labels.get(name, "")) for name in self.policy.group_by)

    def _touch(self, alert: Alert, now: float) -> _Group:
        group = self._groups.setdefault(self._group_of(alert), _Group())
        group.changed = True
        wait_end = now + self.policy.group_wait
        group.due = wait_end if group.due is None else min(group.due, wait_end)
        return group

    # --- notifications
    def tick(self, now: float) -> list[Notification]:
        """The notifications due at `now` (one per group at most); also forgets old resolved alerts and silences."""
        out: list[Notification] = []
        for gkey in sorted(self._groups):
            group = self._groups[gkey]
            if group.due is None or group.due > now:
                continue
            members = sorted((a for a in self._alerts.values() if self._group_of(a) == gkey), key=_order)
            firing = [a for a in members if a.state is AlertState.FIRING]
            loud = tuple(a for a in firing if not self.silenced(a, now))
            resolved = tuple(sorted((a for a in group.resolved.values() if not self.silenced(a, now)), key=_order))
            if loud or resolved:
                out.append(Notification(gkey, loud, resolved, now, repeat=not group.changed))
                self._notified.update(a.key for a in loud)
            group.resolved.clear()
            group.changed = False
            group.due = now + self.policy.repeat_interval if firing else None
            if group.due is None:
                del self._groups[gkey]
        self._forget(now)
        return out

    def next_due(self) -> float | None:
        """When `tick` next has something to send (None: nothing scheduled)."""
        dues = [g.due for g in self._groups.values() if g.due is not None]
        return min(dues) if dues else None

    def _forget(self, now: float) -> None:
        keep = self.policy.keep_resolved
        for key in [k for k, a in self._alerts.items() if a.resolved_at is not None and now >= a.resolved_at + keep]:
            del self._alerts[key]
        for sid in [s.id for s in self._silences.values() if s.ends_at <= now]:
            del self._silences[sid]

    # --- silences
    def add_silence(self, silence: Silence) -> None:
        self._silences[silence.id] = silence

    def remove_silence(self, silence_id: str) -> bool:
        return self._silences.pop(silence_id, None) is not None

    def silences(self) -> list[Silence]:
        return sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))

    def silenced(self, alert: Alert, now: float) -> bool:
        labels = dict(alert.labels)
        return any(s.silences(labels, now) for s in self._silences.values())

    # --- reading
    def alerts(self, states: Iterable[AlertState] | None = None) -> list[Alert]:
        wanted = set(states) if states is not None else set(AlertState)
        return sorted((a for a in self._alerts.values() if a.state in wanted), key=_order)


def _order(alert: Alert) -> tuple[str, Labels]:
    return alert.key
