"""`jishi gateway`'s limit options: read in their written forms and handed to the gateway; bad ones refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from jishi.cli.main import app
from jishi.config import GatewayLimits

runner = CliRunner()


def test_limit_options_reach_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """--max-head-size 2KiB --max-body-size 1MiB --header-timeout 2s --body-timeout 300ms --keepalive-timeout 5s."""
    seen: dict[str, object] = {}
    monkeypatch.setattr("jishi.gateway.main.serve", lambda *args, **kwargs: seen.update(kwargs))
    options = ["--max-head-size", "2KiB", "--max-body-size", "1MiB", "--header-timeout", "2s"]
    options += ["--body-timeout", "300ms", "--keepalive-timeout", "5s"]
    result = runner.invoke(app, ["gateway", *options])
    assert result.exit_code == 0, result.output
    assert seen["limits"] == GatewayLimits(
        max_head_size=2048, max_body_size=1 << 20, header_timeout=2.0, body_timeout=0.3, keepalive_timeout=5.0
    )


def test_send_and_request_timeout_options_reach_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """--send-timeout 250ms --request-timeout 30s become send_timeout 0.25 and request_timeout 30."""
    seen: dict[str, object] = {}
    monkeypatch.setattr("jishi.gateway.main.serve", lambda *args, **kwargs: seen.update(kwargs))
    result = runner.invoke(app, ["gateway", "--send-timeout", "250ms", "--request-timeout", "30s"])
    assert result.exit_code == 0, result.output
    assert seen["limits"] == GatewayLimits(send_timeout=0.25, request_timeout=30.0)


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--max-body-size", "10 parsecs", "must be a size"),
        ("--max-head-size", "100", "greater than or equal to 1024"),
        ("--body-timeout", "soon", "must be a duration"),
        ("--keepalive-timeout", "0", "greater than 0"),
        ("--send-timeout", "0", "greater than 0"),
        ("--request-timeout", "-1", "must be a duration"),
    ],
)
def test_bad_limit_option_exits_2_naming_it(option: str, value: str, says: str) -> None:
    """A bad size or duration stops `jishi gateway` with exit code 2, the option, the problem and an example."""
    result = runner.invoke(app, ["gateway", option, value])
    assert result.exit_code == 2
    assert option in result.output and says in result.output and f"e.g. {option}" in result.output
