"""`jishi up`'s Platform without starting anything: the commands it would run and how it takes signals."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from jishi.cli.up import SIGNAL_DEBOUNCE, Platform, StartupError
from jishi.config import parse_config

CONFIG = """
server: {listen: "127.0.0.1:8600", data_dir: state}
gateway: {listen: "127.0.0.1:8180", workers: 2, access_log: access.jsonl}
services:
  api: {command: "x {port}", drain_seconds: 2, stop_timeout: 3}
"""


def platform(tmp_path: Path) -> Platform:
    return Platform(parse_config(CONFIG, "jishi.yaml", tmp_path), python="/py")


def test_children_get_the_files_addresses_and_directories(tmp_path):
    """server, gateway and agent are started with the file's listen addresses, data dir, workers and log."""
    p = platform(tmp_path)
    assert p.server.argv[:3] == ["/py", "-m", "jishi.server"]
    assert "127.0.0.1:8600" in p.server.argv and str(tmp_path / "state") in p.server.argv
    gw = p.gateway.argv
    assert gw[gw.index("--control-plane") + 1] == "http://127.0.0.1:8600"
    assert gw[gw.index("--listen") + 1] == "127.0.0.1:8180"
    assert gw[gw.index("--workers") + 1] == "2"
    assert gw[gw.index("--access-log") + 1] == str(tmp_path / "access.jsonl")
    assert p.agent.argv[p.agent.argv.index("--data-dir") + 1] == str(tmp_path / "state" / "agent")
    assert p.server.log_path == tmp_path / "state" / "logs" / "server.log"


def test_gateway_is_started_with_the_files_limits(tmp_path):
    """`gateway.limits` reaches the gateway's command line, and the gateway reads back exactly those limits."""
    from jishi.gateway.__main__ import limits_of, parser

    config = parse_config(
        CONFIG.replace(
            "access_log: access.jsonl}",
            "access_log: access.jsonl, limits: {max_head_size: 2KiB, max_body_size: 1MiB, header_timeout: 1.5s, "
            "body_timeout: 300ms, keepalive_timeout: 4s, send_timeout: 2s, request_timeout: 30s}}",
        ),
        "jishi.yaml",
        tmp_path,
    )
    gw = Platform(config, python="/py").gateway.argv
    assert gw[gw.index("--max-head-size") + 1] == "2048"
    assert gw[gw.index("--body-timeout") + 1] == "0.3"
    assert gw[gw.index("--send-timeout") + 1] == "2.0" and gw[gw.index("--request-timeout") + 1] == "30.0"
    assert limits_of(parser().parse_args(gw[3:])) == config.gateway.limits


def test_one_ctrl_c_delivered_twice_is_one_stop(tmp_path):
    """Two SIGINTs within the debounce window count once; a later one asks to hurry."""
    p = platform(tmp_path)
    p.on_signal(signal.SIGINT)
    p.on_signal(signal.SIGINT)
    assert p.stop_requested and not p.hurry()
    p._first_signal = time.monotonic() - SIGNAL_DEBOUNCE - 0.1
    p.on_signal(signal.SIGINT)
    assert p.hurry()


def test_preflight_refuses_a_taken_address(tmp_path):
    """If something already listens where the control plane should, up refuses with the flag to use."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = parse_config(f"server: {{listen: '127.0.0.1:{port}'}}\n", "jishi.yaml", tmp_path)
        with pytest.raises(StartupError, match="--server-listen"):
            Platform(config).preflight()
