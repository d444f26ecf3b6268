"""The expression of an alert rule: a metric with label matchers, optionally `increase(...[window])`.

    healthy_instances                                   every series of the metric
    healthy_instances{service="catalog"}                those whose labels match (=, !=, =~, !~; regexes anchored)
    increase(instance_restarts{service=~"cat.*"}[5m])   how much each series grew over the last 5 minutes

`increase` sums the positive steps between the samples kept for the window; a drop is a counter reset and
counts the new value (as in Prometheus). Durations are seconds, or a number with `ms`, `s`, `m`, `h` or `d`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

from jishi.core.alerts import Labels, Matcher, MatchOp

__all__ = ["Selector", "WindowHistory", "parse_duration", "parse_expr", "parse_matchers"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MATCHER = re.compile(rf'\s*({_NAME})\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_SELECTOR = re.compile(rf"^\s*({_NAME})\s*(?:\{{(.*)\}})?\s*$", re.DOTALL)
_INCREASE = re.compile(r"^\s*increase\s*\((.*)\[\s*([^\]]+?)\s*\]\s*\)\s*$", re.DOTALL)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str | float) -> float:
    """Seconds from `30`, `30s`, `5m`, `1.5h`, `250ms`; raises ValueError saying what is accepted."""
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write seconds (30) or a number with ms, s, m, h or d (5m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...] = ()
    window: float | None = None  # set for increase(...[window])

    def select(self, series: Mapping[Labels, float]) -> dict[Labels, float]:
        """The series whose labels match every matcher."""
        return {labels: v for labels, v in series.items() if all(m.matches(dict(labels)) for m in self.matchers)}


def parse_expr(text: str) -> Selector:
    """Parse a rule expression; a ValueError names what is wrong and shows the accepted forms."""
    window: float | None = None
    inner = text
    increase = _INCREASE.match(text)
    if increase is not None:
        inner, window = increase.group(1), parse_duration(increase.group(2))
        if window <= 0:
            raise ValueError(f"expression {text!r}: the window of increase() must be positive")
    match = _SELECTOR.match(inner)
    if match is None:
        raise ValueError(
            f'expression {text!r} is not understood; write metric, metric{{label="value"}} '
            'or increase(metric{label="value"}[5m])'
        )
    return Selector(match.group(1), _parse_matchers(match.group(2) or "", text), window)


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """Matchers written as in an expression's braces: `service="catalog", severity=~"crit.*"`."""
    return _parse_matchers(text, text)


def _parse_matchers(body: str, text: str) -> tuple[Matcher, ...]:
    matchers: list[Matcher] = []
    pos = 0
    while body[pos:].strip():
        found = _MATCHER.match(body, pos)
        if found is None:
            raise ValueError(f'expression {text!r}: bad label matcher at {body[pos:]!r}; write name="value"')
        value = re.sub(r"\\(.)", r"\1", found.group(3))
        matchers.append(Matcher(found.group(1), MatchOp(found.group(2)), value))
        pos = found.end()
        if pos < len(body):
            if body[pos] != ",":
                raise ValueError(f"expression {text!r}: expected ',' between label matchers at {body[pos:]!r}")
            pos += 1
    return tuple(matchers)


class WindowHistory:
    """Recent samples of windowed series, for `increase`. Pure: the caller passes `now`."""

    def __init__(self) -> None:
        self._samples: dict[tuple[str, Labels], deque[tuple[float, float]]] = {}

    def record(self, metric: str, series: Mapping[Labels, float], now: float, keep: float) -> None:
        """Add one sample of every series; drop samples older than `keep` seconds and series gone that long."""
        for labels, value in series.items():
            self._samples.setdefault((metric, labels), deque()).append((now, value))
        for key, samples in list(self._samples.items()):
            if key[0] != metric:
                continue
            while samples and samples[0][0] < now - keep:
                samples.popleft()
            if not samples:
                del self._samples[key]

    def increase(self, metric: str, window: float, now: float) -> dict[Labels, float]:
        """Per series of `metric` still reported: the growth over the samples taken within the last `window`."""
        out: dict[Labels, float] = {}
        for (name, labels), samples in self._samples.items():
            if name != metric or not samples or samples[-1][0] != now:
                continue
            values = [v for t, v in samples if t >= now - window]
            out[labels] = sum(b - a if b >= a else b for a, b in pairwise(values))
        return out
