"""`python -m jishi.server --listen HOST:PORT --data-dir DIR`: run the control plane."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from jishi.errors import ConfigError
from jishi.server.main import parse_listen, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jishi.server", description="Run the jishi control plane.")
    parser.add_argument("--listen", default="127.0.0.1:8500", help="HOST:PORT to serve the API on")
    parser.add_argument("--data-dir", type=Path, default=Path(".jishi"), help="directory of state.db")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        parse_listen(args.listen)
    except ConfigError as exc:
        print(f"jishi server: {exc}", file=sys.stderr)
        return 2
    serve(args.listen, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
