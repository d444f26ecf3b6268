"""`jishi up` refuses a bad jishi.yaml before starting anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shop_harness import copy_shop

from jishi.testing import free_port


def test_malformed_yaml_exits_2_naming_the_line(tmp_path: Path):
    """A wrong value in the shop's jishi.yaml → exit 2, file:line and field on stderr, nothing started."""
    config = copy_shop(tmp_path / "shop")
    text = config.read_text().replace("instances: 3", "instances: -3", 1)
    config.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "instances: -3" in row)
    port = free_port()
    argv = [sys.executable, "-m", "jishi", "up", "-f", str(config), "--server-listen", f"127.0.0.1:{port}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert f"{config}:{line}: services.catalog.instances: must be ≥ 0, got -3" in done.stderr
    assert "fix:" in done.stderr
    assert not (tmp_path / "shop" / ".jishi").exists()


def test_yaml_syntax_error_exits_2_naming_the_line(tmp_path: Path):
    """Broken YAML → exit 2 with the line of the problem."""
    config = tmp_path / "jishi.yaml"
    config.write_text("services:\n  catalog:\n    command: [python\n  users: {}\n")
    done = subprocess.run(
        [sys.executable, "-m", "jishi", "up", "-f", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert f"{config}:4: YAML syntax error" in done.stderr
