"""The `alerting:` section of jishi.yaml: parsed with durations and defaults; mistakes name the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from jishi.config import parse_config
from jishi.errors import ConfigError

BASE = """
services:
  web: {command: "python -m http.server {port}"}
"""


def test_alerting_section_with_durations_and_rules(tmp_path: Path) -> None:
    """Durations ("10s", "4h", "1d"), a rule with `for:`, webhooks and e-mail reach AlertingConfig."""
    text = (
        BASE
        + """
alerting:
  interval: 2s
  group_wait: 500ms
  repeat_interval: 1d
  rules:
    - name: WebDown
      expr: healthy_instances{service="web"}
      op: "<"
      threshold: 1
      for: 10s
      labels: {team: shop}
  webhooks: [{url: "http://127.0.0.1:9/hook"}]
  email: [{host: 127.0.0.1, port: 2525, sender: a@example.com, to: [b@example.com]}]
"""
    )
    config = parse_config(text, "jishi.yaml", tmp_path)
    alerting = config.alerting
    assert (alerting.interval, alerting.group_wait, alerting.repeat_interval) == (2.0, 0.5, 86400.0)
    [rule] = alerting.rules
    assert (rule.name, rule.for_, rule.labels) == ("WebDown", 10.0, {"team": "shop"})
    assert [w.url for w in alerting.webhooks] == ["http://127.0.0.1:9/hook"]
    assert alerting.email[0].port == 2525
    assert [r.name for r in alerting.all_rules()][:2] == ["NoHealthyInstance", "InstanceFlapping"]


def test_no_section_means_the_defaults(tmp_path: Path) -> None:
    """Without `alerting:` the built-in rules and the log notifier are on."""
    alerting = parse_config(BASE, "jishi.yaml", tmp_path).alerting
    assert alerting.builtin_rules and alerting.log and alerting.rules == []


def test_a_bad_expression_names_the_line_and_the_field(tmp_path: Path) -> None:
    """A rule with an expression that does not parse is a ConfigError naming alerting.rules.0.expr and its line."""
    text = BASE + "alerting:\n  rules:\n    - name: Bad\n      expr: 'rate(x'\n      threshold: 1\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "jishi.yaml", tmp_path)
    message = str(caught.value)
    assert "expr" in message and "jishi.yaml:7: alerting.rules[0].expr" in message
