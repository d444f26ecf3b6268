"""`HOST:PORT` listen addresses: parsed once, the same way for jishi.yaml, `--listen` flags and URLs."""

from __future__ import annotations

from jishi.errors import ConfigError

__all__ = ["listen_url", "parse_listen"]


def parse_listen(listen: str, *, field: str = "--listen", example: str = "127.0.0.1:8500") -> tuple[str, int]:
    """`HOST:PORT` → (host, port); a port of 0 lets the kernel pick. ConfigError saying how to fix a bad value."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"must be HOST:PORT, got {listen!r}", field=field, fix=f"for example {example}")
    return host.strip("[]"), int(port)


def listen_url(listen: str) -> str:
    """The http:// URL a client on this machine uses to reach a server listening on `listen`."""
    host, port = parse_listen(listen)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
