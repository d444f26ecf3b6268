"""Rule expressions, durations, the increase() window and the rules/config models."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jishi.alerting import (
    BUILTIN_RULES,
    AlertingConfig,
    AlertRule,
    SilenceSpec,
    parse_duration,
    parse_expr,
    parse_matchers,
    silence_json,
)
from jishi.alerting.expr import WindowHistory
from jishi.core.alerts import Matcher, MatchOp, Op, Silence, labelset


def test_parse_plain_metric_and_matchers() -> None:
    """A bare metric has no matchers; braces give =, !=, =~ and !~ matchers with escaped quotes kept."""
    assert parse_expr("healthy_instances").metric == "healthy_instances"
    sel = parse_expr(r'healthy_instances{service="catalog", team!="x", zone=~"eu-.*", host!~"a\"b"}')
    assert sel.matchers == (
        Matcher("service", MatchOp.EQ, "catalog"),
        Matcher("team", MatchOp.NE, "x"),
        Matcher("zone", MatchOp.RE, "eu-.*"),
        Matcher("host", MatchOp.NRE, 'a"b'),
    )
    assert sel.window is None


def test_parse_increase_with_window() -> None:
    """increase(metric{...}[5m]) keeps the selector and a 300 s window."""
    sel = parse_expr('increase(instance_restarts{service="catalog"}[5m])')
    assert (sel.metric, sel.window, len(sel.matchers)) == ("instance_restarts", 300.0, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo{a=b}", 'write name="value"'),
        ('foo{a="b" c="d"}', "expected ','"),
        ("1foo", "not understood"),
        ("increase(foo[soon])", "not a duration"),
    ],
)
def test_bad_expressions_say_what_is_wrong(text: str, message: str) -> None:
    """Each malformed expression is refused with a message naming the problem."""
    with pytest.raises(ValueError, match=message):
        parse_expr(text)


def test_durations() -> None:
    """Seconds, ms, s, m, h and d all convert; numbers pass through."""
    assert [parse_duration(t) for t in ("30", "250ms", "10s", "5m", "1.5h", "1d")] == [30, 0.25, 10, 300, 5400, 86400]
    assert parse_duration(2) == 2.0


def test_parse_matchers_for_silences() -> None:
    """The matcher list of a silence parses like an expression's braces."""
    assert parse_matchers('service="catalog",severity=~"crit.*"') == (
        Matcher("service", MatchOp.EQ, "catalog"),
        Matcher("severity", MatchOp.RE, "crit.*"),
    )


def test_increase_over_a_window_counts_resets() -> None:
    """increase() sums the steps within the window; a drop counts as a reset to the new value."""
    h, cat = WindowHistory(), labelset({"service": "catalog"})
    for t, v in [(0, 1), (10, 3), (20, 1), (30, 4)]:
        h.record("r", {cat: v}, float(t), keep=20.0)
    assert h.increase("r", 20.0, 30.0) == {cat: 1 + 3}  # samples at 10, 20, 30: 3 → 1 (reset: +1) → 4 (+3)
    assert h.increase("r", 10.0, 30.0) == {cat: 3}


def test_increase_forgets_series_no_longer_reported() -> None:
    """A series missing from the latest sample has no increase value and is dropped after the window."""
    h, a, b = WindowHistory(), labelset({"s": "a"}), labelset({"s": "b"})
    h.record("r", {a: 1, b: 1}, 0.0, keep=5.0)
    h.record("r", {a: 2}, 1.0, keep=5.0)
    assert h.increase("r", 5.0, 1.0) == {a: 1}
    h.record("r", {a: 2}, 10.0, keep=5.0)
    assert h.increase("r", 5.0, 10.0) == {a: 0}


def test_rule_from_yaml_shape() -> None:
    """A rule as written in jishi.yaml: `for` as a duration string, op as a symbol."""
    rule = AlertRule.model_validate(
        {"name": "CatalogDown", "expr": 'healthy_instances{service="catalog"}', "op": "<", "threshold": 1, "for": "30s"}
    )
    assert (rule.op, rule.for_, rule.selector.metric) == (Op.LT, 30.0, "healthy_instances")


def test_rule_validation_errors() -> None:
    """A bad expression, a reserved label or a bad op each fail validation naming the field."""
    with pytest.raises(ValidationError, match="expr"):
        AlertRule(name="x", expr="foo{", threshold=1)
    with pytest.raises(ValidationError, match="set by jishi"):
        AlertRule(name="x", expr="foo", threshold=1, labels={"severity": "low"})
    with pytest.raises(ValidationError, match="op"):
        AlertRule.model_validate({"name": "x", "expr": "foo", "threshold": 1, "op": "=>"})


def test_config_rules_builtins_and_policy() -> None:
    """Built-ins come first unless turned off; a configured rule replaces its namesake; names are unique."""
    own = {"name": "NoHealthyInstance", "expr": "healthy_instances", "op": "<", "threshold": 2}
    config = AlertingConfig.model_validate({"rules": [own], "group_wait": "1s", "repeat_interval": "1m"})
    rules = {r.name: r for r in config.all_rules()}
    assert set(rules) == {r.name for r in BUILTIN_RULES} and rules["NoHealthyInstance"].threshold == 2
    assert (config.policy().group_wait, config.policy().repeat_interval) == (1.0, 60.0)
    assert AlertingConfig(builtin_rules=False).all_rules() == []
    with pytest.raises(ValidationError, match="unique"):
        AlertingConfig.model_validate({"rules": [own, own]})


def test_silence_spec_round_trips_through_json() -> None:
    """A silence with quotes and backslashes in a value survives silence_json → SilenceSpec → Silence."""
    original = Silence("s1", (Matcher("service", MatchOp.RE, 'ca"t\\d+'), Matcher("team", MatchOp.NE, "x")), 1.0, 2.0)
    assert SilenceSpec.model_validate(silence_json(original)).to_silence() == original
    with pytest.raises(ValidationError, match="at least one matcher"):
        SilenceSpec(id="s2", matchers="", starts_at=0, ends_at=1)
