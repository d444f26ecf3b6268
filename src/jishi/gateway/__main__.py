"""`python -m jishi.gateway --control-plane URL --listen HOST:PORT --state-dir DIR [--workers N] [TLS options]`.

`--admin-listen HOST:PORT` serves the gateway's metrics at /metrics (and /healthz) there; off by default.

TLS: `--tls-cert FILE --tls-key FILE` (the default certificate), and `--tls-sni HOSTS CERT KEY` (repeatable;
HOSTS comma-separated) for more certificates chosen by server name.

Limits on clients (jishi.yaml's `gateway.limits`; defaults as there): `--max-head-size SIZE` (32KiB),
`--max-body-size SIZE` (100MiB), `--header-timeout DURATION` (10s), `--body-timeout DURATION` (60s),
`--keepalive-timeout DURATION` (75s), `--send-timeout DURATION` (60s), `--request-timeout DURATION` (0: none).
Sizes: bytes or "32KiB", "100MiB"; durations: seconds or "500ms", "2s".
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvloop

from jishi.config import GatewayLimits, GatewayTLS, TLSCertificate
from jishi.errors import ConfigError
from jishi.gateway.main import limits_from_options, run, serve

LIMIT_OPTIONS = {
    "--max-head-size": "largest request head (request line and headers): SIZE, e.g. 32KiB; larger → 431",
    "--max-body-size": "largest request body: SIZE, e.g. 100MiB; larger → 413",
    "--header-timeout": "a request head must arrive within this DURATION, e.g. 10s; else 408",
    "--body-timeout": "longest wait between two reads of a request body: DURATION, e.g. 60s; else 408",
    "--keepalive-timeout": "an idle keep-alive connection closes after this DURATION, e.g. 75s",
    "--send-timeout": "a client that takes no response byte for this DURATION is cut off, e.g. 60s",
    "--request-timeout": "longest whole request, head to response end: DURATION, e.g. 5m (0: none); else 408/504",
}


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m jishi.gateway`."""
    parser = argparse.ArgumentParser(prog="python -m jishi.gateway", description="jishi gateway (data plane)")
    parser.add_argument("--control-plane", default="http://127.0.0.1:8500", help="control-plane URL")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to serve on")
    parser.add_argument("--state-dir", type=Path, default=Path(".jishi/gateway"), help="where the snapshot lives")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    parser.add_argument("--access-log", type=Path, default=None, help="JSON-lines access log file")
    parser.add_argument(
        "--admin-listen", default=None, help="HOST:PORT for /metrics and /healthz (default: no admin listener)"
    )
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tls-cert", default=None, help="serve HTTPS with this PEM certificate (chain)")
    parser.add_argument("--tls-key", default=None, help="the PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-sni",
        nargs=3,
        action="append",
        default=[],
        metavar=("HOSTS", "CERT", "KEY"),
        help="another certificate for these server names (comma-separated; *.example.com allowed)",
    )
    for option, meaning in LIMIT_OPTIONS.items():
        parser.add_argument(option, default=None, help=meaning)
    parser.add_argument("--log-level", default="INFO")
    return parser


def limits_of(args: argparse.Namespace) -> GatewayLimits:
    """The limits the options give (`ConfigError` naming the option for a bad value)."""
    return limits_from_options(
        max_head_size=args.max_head_size,
        max_body_size=args.max_body_size,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        keepalive_timeout=args.keepalive_timeout,
        send_timeout=args.send_timeout,
        request_timeout=args.request_timeout,
    )


def main(argv: list[str] | None = None) -> int:
    options = parser()
    args = options.parse_args(argv)
    tls = None
    if args.tls_cert or args.tls_key or args.tls_sni:
        if not (args.tls_cert and args.tls_key):
            options.error("TLS needs both --tls-cert and --tls-key")
        sni = [TLSCertificate(hosts=h.split(","), cert=c, key=k) for h, c, k in args.tls_sni]
        tls = GatewayTLS(cert=args.tls_cert, key=args.tls_key, sni=sni)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
    )
    try:
        limits = limits_of(args)
        if args.worker_index is not None:
            uvloop.run(
                run(
                    args.control_plane,
                    args.listen,
                    args.state_dir,
                    access_log=args.access_log,
                    reuse_port=True,
                    worker=args.worker_index,
                    workers=args.workers,
                    tls=tls,
                    limits=limits,
                )
            )
        else:
            serve(
                args.control_plane,
                args.listen,
                args.state_dir,
                args.workers,
                args.access_log,
                tls=tls,
                admin_listen=args.admin_listen,
                limits=limits,
            )
    except ConfigError as exc:
        print(f"jishi gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"jishi gateway: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
