"""`gateway.limits` in jishi.yaml: sizes and durations in their written forms, defaults, and how each mistake
is reported (file, line, field, fix)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jishi.config import GatewayLimits, format_size, parse_config, parse_size
from jishi.config._model import ProjectConfig
from jishi.errors import ConfigError


def parse(text: str, tmp_path: Path) -> ProjectConfig:
    return parse_config(textwrap.dedent(text), "jishi.yaml", tmp_path, python="/py")


def error(text: str, tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path)
    return caught.value


def test_defaults_are_nginx_like(tmp_path: Path) -> None:
    """Without `gateway.limits`: 32 KiB heads, 100 MiB bodies, 10 s header, 60 s body and 75 s keep-alive timeouts."""
    limits = parse("services: {}\n", tmp_path).gateway.limits
    assert limits == GatewayLimits()
    assert (limits.max_head_size, limits.max_body_size) == (32 * 1024, 100 * 1024 * 1024)
    assert (limits.header_timeout, limits.body_timeout, limits.keepalive_timeout) == (10.0, 60.0, 75.0)


def test_send_timeout_defaults_to_a_minute_and_request_timeout_to_none(tmp_path: Path) -> None:
    """Without them: send_timeout 60 s (nginx's default), request_timeout 0 (off, as Envoy's)."""
    limits = parse("services: {}\n", tmp_path).gateway.limits
    assert (limits.send_timeout, limits.request_timeout) == (60.0, 0.0)


def test_send_and_request_timeouts_are_read_as_durations(tmp_path: Path) -> None:
    """`send_timeout: 300ms` and `request_timeout: 2m` are seconds; `request_timeout: 0` turns it off."""
    text = "gateway:\n  limits:\n    send_timeout: 300ms\n    request_timeout: {}\nservices: {{}}\n"
    limits = parse(text.format("2m"), tmp_path).gateway.limits
    assert (limits.send_timeout, limits.request_timeout) == (0.3, 120.0)
    assert parse(text.format("0"), tmp_path).gateway.limits.request_timeout == 0.0


def test_sizes_and_durations_are_read_in_their_written_forms(tmp_path: Path) -> None:
    """Sizes take units (2KiB, 1MB, bytes) and durations take "300ms", "1m" or seconds."""
    limits = parse(
        """
        gateway:
          limits:
            max_head_size: 2KiB
            max_body_size: 1MB
            header_timeout: 300ms
            body_timeout: 1m
            keepalive_timeout: 5
        services: {}
        """,
        tmp_path,
    ).gateway.limits
    assert (limits.max_head_size, limits.max_body_size) == (2048, 1_000_000)
    assert (limits.header_timeout, limits.body_timeout, limits.keepalive_timeout) == (0.3, 60.0, 5.0)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (0, 0),
        (4096, 4096),
        ("4096", 4096),
        ("32KiB", 32768),
        ("32k", 32768),
        ("100MiB", 100 << 20),
        ("1M", 1 << 20),
        ("1GiB", 1 << 30),
        ("2 KB", 2000),
        ("1.5KiB", 1536),
        ("10B", 10),
    ],
)
def test_parse_size(text: object, size: int) -> None:
    """Sizes in bytes, binary units (KiB, k, MiB, ...) and decimal ones (KB, MB, GB)."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", [-1, "-1", "1.2B", "ten", "10 parsecs", "1 KiBs", True, 1.5, None, ""])
def test_parse_size_rejects(text: object) -> None:
    """Negative, fractional byte counts, unknown units and non-sizes are refused."""
    with pytest.raises(ValueError, match="must"):
        parse_size(text)


def test_format_size_uses_the_largest_whole_binary_unit() -> None:
    """The size as people write it in the file: 32KiB, 100MiB, or plain bytes."""
    assert [format_size(n) for n in (32768, 100 << 20, 1 << 30, 1000, 0)] == ["32KiB", "100MiB", "1GiB", "1000", "0"]


def test_bad_size_names_file_line_field_and_fix(tmp_path: Path) -> None:
    """A size that is not one is reported at its line with the forms accepted."""
    exc = error("gateway:\n  limits:\n    max_body_size: 10 parsecs\nservices: {}\n", tmp_path)
    assert (exc.file, exc.line, exc.field) == ("jishi.yaml", 3, "gateway.limits.max_body_size")
    assert "must be a size" in exc.message and "'10 parsecs'" in exc.message
    assert exc.fix is not None and "100MiB" in exc.fix


def test_bad_duration_names_file_line_field_and_fix(tmp_path: Path) -> None:
    """A duration that is not one is reported at its line with the forms accepted."""
    exc = error("gateway:\n  limits:\n    body_timeout: soon\nservices: {}\n", tmp_path)
    assert (exc.file, exc.line, exc.field) == ("jishi.yaml", 3, "gateway.limits.body_timeout")
    assert "must be a duration" in exc.message
    assert exc.fix is not None and '"500ms"' in exc.fix


@pytest.mark.parametrize(
    ("line", "field", "says", "fix"),
    [
        ("max_head_size: 100", "max_head_size", "must be ≥ 1024, got 100", "max_head_size: 32KiB"),
        ("header_timeout: 0", "header_timeout", "must be > 0", "header_timeout: 10s"),
        ("body_timeout: 0ms", "body_timeout", "must be > 0", "body_timeout: 60s"),
        ("keepalive_timeout: -1", "keepalive_timeout", "must be > 0", "keepalive_timeout: 75s"),
        ("send_timeout: 0", "send_timeout", "must be > 0", "send_timeout: 60s"),
        ("request_timeout: -1", "request_timeout", "must be ≥ 0", "request_timeout: 5m"),
    ],
)
def test_out_of_range_values_name_the_bound_and_a_fix(
    tmp_path: Path, line: str, field: str, says: str, fix: str
) -> None:
    """Too small a head limit and timeouts of zero or less are refused with the bound and an example."""
    exc = error(f"services: {{}}\ngateway:\n  limits:\n    {line}\n", tmp_path)
    assert (exc.line, exc.field) == (4, f"gateway.limits.{field}")
    assert says in exc.message
    assert exc.fix is not None and fix in exc.fix


def test_unknown_limit_suggests_the_closest(tmp_path: Path) -> None:
    """A misspelt limit is an error with "did you mean", like any unknown key."""
    exc = error("gateway:\n  limits:\n    client_body_timeout: 5s\nservices: {}\n", tmp_path)
    assert (exc.line, exc.field, exc.fix) == (3, "gateway.limits.client_body_timeout", "did you mean `body_timeout`?")


def test_limits_must_be_a_mapping(tmp_path: Path) -> None:
    """`limits: 5` is reported at its line as needing fields."""
    exc = error("gateway:\n  limits: 5\nservices: {}\n", tmp_path)
    assert (exc.line, exc.field) == (2, "gateway.limits")
    assert "mapping" in exc.message
