"""Alert state machine at exact times: pending, firing, resolved, repeat, grouping and silences."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from jishi.core.alerts import (
    _TABLE,
    Alert,
    AlertBook,
    AlertState,
    Labels,
    Matcher,
    MatchOp,
    Notification,
    NotifyPolicy,
    Op,
    Silence,
    labelset,
    render,
)


@dataclass(frozen=True)
class Rule:
    name: str = "NoHealthyInstance"
    op: Op = Op.LT
    threshold: float = 1.0
    for_: float = 30.0
    labels: Mapping[str, str] = field(default_factory=dict)
    message: str = "{labels.service} has {value} healthy instances"
    severity: str = "critical"


def series(**labels: str) -> Labels:
    return labelset(labels)


CAT, ORD = series(service="catalog"), series(service="orders")
POLICY = NotifyPolicy(group_by=("alertname",), group_wait=10.0, repeat_interval=100.0, keep_resolved=50.0)


def states(book: AlertBook) -> dict[str, AlertState]:
    return {a.label_map["service"]: a.state for a in book.alerts()}


def services(alerts: tuple[Alert, ...]) -> list[str]:
    return [a.label_map["service"] for a in alerts]


def test_transition_table_is_total() -> None:
    """Every state has a move for a true and a false condition."""
    assert set(_TABLE) == {(s, c) for s in AlertState for c in (True, False)}


def test_pending_then_firing_after_for_seconds() -> None:
    """True at 0 → PENDING; still PENDING at 29.9; FIRING exactly at 30 (for: 30)."""
    book, rule = AlertBook(POLICY), Rule()
    [change] = book.evaluate(rule, {CAT: 0}, 0.0)
    assert (change.old, change.alert.state, change.at) == (AlertState.INACTIVE, AlertState.PENDING, 0.0)
    assert book.evaluate(rule, {CAT: 0}, 29.9) == []
    assert states(book) == {"catalog": AlertState.PENDING}
    [change] = book.evaluate(rule, {CAT: 0}, 30.0)
    assert (change.old, change.alert.state) == (AlertState.PENDING, AlertState.FIRING)
    assert (change.alert.active_since, change.alert.fired_at) == (0.0, 30.0)


def test_pending_that_turns_false_is_forgotten() -> None:
    """PENDING → INACTIVE when the condition turns false before `for`; the alert is dropped from the book."""
    book, rule = AlertBook(POLICY), Rule()
    book.evaluate(rule, {CAT: 0}, 0.0)
    [change] = book.evaluate(rule, {CAT: 2}, 10.0)
    assert (change.old, change.alert.state) == (AlertState.PENDING, AlertState.INACTIVE)
    assert book.alerts() == []
    book.evaluate(rule, {CAT: 0}, 20.0)
    assert book.evaluate(rule, {CAT: 0}, 49.9) == []  # the `for` clock restarted at 20
    assert [c.alert.state for c in book.evaluate(rule, {CAT: 0}, 50.0)] == [AlertState.FIRING]


def test_for_zero_fires_in_the_same_evaluation() -> None:
    """With for: 0 one true evaluation goes INACTIVE → FIRING, reported as one change."""
    book = AlertBook(POLICY)
    [change] = book.evaluate(Rule(for_=0.0), {CAT: 0}, 5.0)
    assert (change.old, change.alert.state, change.alert.fired_at) == (AlertState.INACTIVE, AlertState.FIRING, 5.0)


def test_firing_resolves_when_false_or_when_the_series_vanishes() -> None:
    """A false condition resolves one alert; a series no longer reported resolves another."""
    book, rule = AlertBook(POLICY), Rule(for_=0.0)
    book.evaluate(rule, {CAT: 0, ORD: 0}, 0.0)
    changes = book.evaluate(rule, {CAT: 3}, 7.0)
    assert sorted((c.alert.label_map["service"], c.alert.state, c.at) for c in changes) == [
        ("catalog", AlertState.RESOLVED, 7.0),
        ("orders", AlertState.RESOLVED, 7.0),
    ]
    assert all(a.resolved_at == 7.0 for a in book.alerts())


def test_resolved_goes_pending_again_and_is_forgotten_after_keep_resolved() -> None:
    """RESOLVED → PENDING on true with a fresh active_since; an untouched RESOLVED alert is dropped at keep_resolved."""
    book, rule = AlertBook(POLICY), Rule(for_=5.0)
    book.evaluate(rule, {CAT: 0}, 0.0)
    book.evaluate(rule, {CAT: 0}, 5.0)
    book.evaluate(rule, {CAT: 1}, 6.0)
    [change] = book.evaluate(rule, {CAT: 0}, 8.0)
    assert (change.old, change.alert.state, change.alert.active_since) == (
        AlertState.RESOLVED,
        AlertState.PENDING,
        8.0,
    )
    book.evaluate(rule, {CAT: 0, ORD: 0}, 13.0)
    book.evaluate(rule, {ORD: 0}, 20.0)  # catalog resolved at 20
    book.tick(69.9)
    assert states(book)["catalog"] is AlertState.RESOLVED
    book.tick(70.0)
    assert "catalog" not in states(book)


def test_message_and_labels_of_an_alert() -> None:
    """The alert carries the series labels, the rule's labels, alertname, severity and the rendered message."""
    book = AlertBook(POLICY)
    book.evaluate(Rule(labels={"team": "shop"}), {CAT: 0}, 0.0)
    [alert] = book.alerts()
    assert alert.label_map == {
        "service": "catalog",
        "team": "shop",
        "alertname": "NoHealthyInstance",
        "severity": "critical",
    }
    assert (alert.value, alert.message) == (0, "catalog has 0 healthy instances")


def test_first_notification_waits_group_wait_then_repeats() -> None:
    """Firing at 30 → notification at exactly 40 (group_wait 10), then at 140 and 240 (repeat 100) as repeats."""
    book, rule = AlertBook(POLICY), Rule()
    for t in (0.0, 30.0):
        book.evaluate(rule, {CAT: 0}, t)
    assert book.next_due() == 40.0
    assert book.tick(39.9) == []
    [note] = book.tick(40.0)
    assert (note.status, services(note.firing), note.at, note.repeat) == ("firing", ["catalog"], 40.0, False)
    assert note.group == (("alertname", "NoHealthyInstance"),)
    assert book.tick(139.9) == []
    [again] = book.tick(140.0)
    assert (services(again.firing), again.repeat) == (["catalog"], True)
    assert book.next_due() == 240.0


def test_resolve_is_notified_group_wait_after_it() -> None:
    """A notified alert that resolves at 50 goes out as resolved at 60; then nothing more is scheduled."""
    book, rule = AlertBook(POLICY), Rule(for_=0.0)
    book.evaluate(rule, {CAT: 0}, 0.0)
    book.tick(10.0)
    book.evaluate(rule, {CAT: 1}, 50.0)
    assert book.tick(59.9) == []
    [note] = book.tick(60.0)
    assert (note.status, note.firing, services(note.resolved)) == ("resolved", (), ["catalog"])
    assert note.resolved[0].resolved_at == 50.0
    assert book.next_due() is None
    assert book.tick(1000.0) == []


def test_alerts_within_group_wait_go_out_as_one_notification() -> None:
    """Two alerts of one rule firing 3 s apart are sent together at first + group_wait."""
    book, rule = AlertBook(POLICY), Rule(for_=0.0)
    book.evaluate(rule, {CAT: 0}, 0.0)
    book.evaluate(rule, {CAT: 0, ORD: 0}, 3.0)
    [note] = book.tick(10.0)
    assert services(note.firing) == ["catalog", "orders"]


def test_different_groups_get_their_own_notifications() -> None:
    """With group_by service, two services firing together yield two notifications, one per group."""
    book = AlertBook(NotifyPolicy(group_by=("service",), group_wait=10.0, repeat_interval=100.0))
    book.evaluate(Rule(for_=0.0), {CAT: 0, ORD: 0}, 0.0)
    notes = book.tick(10.0)
    assert [(n.group, services(n.firing)) for n in notes] == [
        ((("service", "catalog"),), ["catalog"]),
        ((("service", "orders"),), ["orders"]),
    ]


def test_a_new_alert_in_a_notified_group_goes_out_after_group_wait_not_the_repeat() -> None:
    """After the group's notification at 10, a second alert firing at 30 is sent at 40 with the first one."""
    book, rule = AlertBook(POLICY), Rule(for_=0.0)
    book.evaluate(rule, {CAT: 0}, 0.0)
    book.tick(10.0)
    book.evaluate(rule, {CAT: 0, ORD: 0}, 30.0)
    assert book.next_due() == 40.0
    [note] = book.tick(40.0)
    assert (services(note.firing), note.repeat) == (["catalog", "orders"], False)
    assert book.next_due() == 140.0


def test_firing_and_resolving_within_group_wait_sends_nothing() -> None:
    """An alert that fires at 0 and resolves at 5 (before the group's wait ends) is never notified."""
    book, rule = AlertBook(POLICY), Rule(for_=0.0)
    book.evaluate(rule, {CAT: 0}, 0.0)
    book.evaluate(rule, {CAT: 2}, 5.0)
    assert book.tick(10.0) == []
    assert book.next_due() is None


def test_one_notification_holds_firing_and_resolved_alerts() -> None:
    """Catalog resolves while orders fires in the same wait: one notification lists orders firing, catalog resolved."""
    book, rule = AlertBook(POLICY), Rule(for_=0.0)
    book.evaluate(rule, {CAT: 0}, 0.0)
    book.tick(10.0)
    book.evaluate(rule, {CAT: 1, ORD: 0}, 20.0)
    [note] = book.tick(30.0)
    assert (services(note.firing), services(note.resolved), note.status) == (["orders"], ["catalog"], "firing")


def silence(sid: str, start: float, end: float, **labels: str) -> Silence:
    return Silence(sid, tuple(Matcher(k, MatchOp.EQ, v) for k, v in labels.items()), start, end)


def test_silenced_alert_changes_state_but_sends_nothing() -> None:
    """Under a silence the alert still goes PENDING → FIRING → RESOLVED, and no notification is made."""
    book, rule = AlertBook(POLICY), Rule(for_=5.0)
    book.add_silence(silence("s1", 0.0, 1000.0, service="catalog"))
    states_seen = [c.alert.state for t, v in ((0.0, 0), (5.0, 0), (60.0, 1)) for c in book.evaluate(rule, {CAT: v}, t)]
    assert states_seen == [AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED]
    assert book.tick(15.0) == [] and book.tick(70.0) == [] and book.tick(200.0) == []


def test_silence_filters_only_matching_alerts_of_a_group() -> None:
    """In a group with a silenced and a loud alert, the notification lists only the loud one."""
    book, rule = AlertBook(POLICY), Rule(for_=0.0)
    book.add_silence(silence("s1", 0.0, 1000.0, service="catalog"))
    book.evaluate(rule, {CAT: 0, ORD: 0}, 0.0)
    [note] = book.tick(10.0)
    assert services(note.firing) == ["orders"]


def test_alert_still_firing_when_its_silence_ends_is_sent_at_the_next_repeat() -> None:
    """Silenced 0..50: the alert firing since 0 is first sent at the repeat time 110, and its resolve is then sent."""
    book, rule = AlertBook(POLICY), Rule(for_=0.0)
    book.add_silence(silence("s1", 0.0, 50.0, service="catalog"))
    book.evaluate(rule, {CAT: 0}, 0.0)
    assert book.tick(10.0) == []
    assert book.silences() != [] and book.tick(50.0) == [] and book.silences() == []  # expired silences are dropped
    [note] = book.tick(110.0)
    assert (services(note.firing), note.repeat) == (["catalog"], True)
    book.evaluate(rule, {CAT: 1}, 120.0)
    [done] = book.tick(130.0)
    assert services(done.resolved) == ["catalog"]


def test_silence_window_and_removal() -> None:
    """A silence holds on [starts_at, ends_at) only; a removed silence no longer mutes anything."""
    book = AlertBook(POLICY)
    book.add_silence(silence("s1", 10.0, 20.0, service="catalog"))
    alert = Alert("r", labelset({"service": "catalog"}))
    assert [book.silenced(alert, t) for t in (9.9, 10.0, 19.9, 20.0)] == [False, True, True, False]
    assert book.remove_silence("s1") and not book.remove_silence("s1")
    assert not book.silenced(alert, 15.0)


def test_silence_needs_matchers_and_an_end_after_its_start() -> None:
    """An empty or backwards silence is refused with a message that says why."""
    with pytest.raises(ValueError, match="at least one matcher"):
        Silence("s", (), 0.0, 1.0)
    with pytest.raises(ValueError, match="must be after"):
        silence("s", 5.0, 5.0, service="x")


def test_matchers() -> None:
    """=, !=, =~ and !~ match as in Prometheus: regexes are anchored and an absent label is empty."""
    labels = {"service": "catalog", "severity": "critical"}
    assert Matcher("service", MatchOp.EQ, "catalog").matches(labels)
    assert Matcher("service", MatchOp.NE, "orders").matches(labels)
    assert Matcher("service", MatchOp.RE, "cat.*").matches(labels)
    assert not Matcher("service", MatchOp.RE, "cat").matches(labels)
    assert Matcher("service", MatchOp.NRE, "ord.*").matches(labels)
    assert Matcher("team", MatchOp.EQ, "").matches(labels)
    with pytest.raises(ValueError, match="not a valid regex"):
        Matcher("service", MatchOp.RE, "(")


def test_render_fills_value_and_labels() -> None:
    """{value} and {labels.x} are filled; unknown labels are empty and other braces stay."""
    assert render("{labels.service}: {value} {labels.nope}{other}", 0.25, {"service": "a"}) == "a: 0.25 {other}"
    assert render("{value}", None, {}) == "n/a"


def test_every_comparison_operator() -> None:
    """Each op decides the condition as its symbol says (2 vs threshold 2)."""
    expected = {Op.LT: False, Op.LE: True, Op.GT: False, Op.GE: True, Op.EQ: True, Op.NE: False}
    for op, fires in expected.items():
        book = AlertBook(POLICY)
        book.evaluate(Rule(op=op, threshold=2.0, for_=0.0), {CAT: 2}, 0.0)
        assert bool(book.alerts()) is fires, op


def test_policy_rejects_nonsense() -> None:
    """A negative group_wait or a zero repeat_interval is refused."""
    with pytest.raises(ValueError):
        NotifyPolicy(group_wait=-1.0)
    with pytest.raises(ValueError):
        NotifyPolicy(repeat_interval=0.0)


def test_notification_status() -> None:
    """A notification is 'firing' while it lists a firing alert, else 'resolved'."""
    a = Alert("r", CAT)
    assert Notification((), (a,), (), 0.0).status == "firing"
    assert Notification((), (), (a,), 0.0).status == "resolved"


def test_for_is_met_at_the_exact_deadline_despite_float_rounding() -> None:
    """for: 0.3 from 1000.0 fires at 1000.0 + 0.3 although 1000.3 - 1000.0 < 0.3 in floating point."""
    book = AlertBook(POLICY)
    book.evaluate(Rule(for_=0.3), {CAT: 0}, 1000.0)
    assert [c.alert.state for c in book.evaluate(Rule(for_=0.3), {CAT: 0}, 1000.0 + 0.3)] == [AlertState.FIRING]
