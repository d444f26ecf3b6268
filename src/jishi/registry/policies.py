"""A route's traffic policies, as written in jishi.yaml and kept in the route record.

Every section is optional and off when absent, so a route that names none pays nothing for them on the hot path.
Durations are seconds, or strings like "250ms", "2s", "1m". The gateway applies them in this order (outermost
first) — the same order as `docs/configuration.md` documents:

    rate_limit → concurrency (adaptive) → bulkhead → breaker → timeout (total) → retry (each try: lb pick,
    per-try timeout, outlier detection / active health) → fallback (when the chain ends in a failure)

    lb               LoadBalancing       policy, hash key, slow start, panic threshold
    health_check     ActiveHealthCheck   checks the gateway itself makes to each instance of the route
    outlier          OutlierDetection    passive ejection on consecutive 5xx / gateway errors / success rate
    retry            RetryPolicy         what is retried, how often, per-try timeout, backoff, budget
    hedge            HedgeSpec           a slow idempotent request is also sent to another instance; first head wins
    timeout          total time for the whole request (every try), None: only the per-try limits
    rewrite          Rewrite             path rewrite, request and response headers set/add/remove
    access_log       AccessLogSpec       a JSON-lines access log of this route's requests in its own file
    rate_limit       RateLimit           requests per period, by key (client IP, header, route), local or Redis
    bulkhead         BulkheadPolicy      max concurrent requests, bounded wait
    concurrency      AdaptiveConcurrency AIMD / gradient limit that sheds load
    breaker          BreakerPolicy       resilience4j-style breaker over the route's outcomes
    fallback         Fallback            the degraded answer sent instead of an error
    upstream_tls     UpstreamTLS         talk TLS to the instances (verify against a CA, SNI, client certificate)
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AccessLogSpec",
    "ActiveHealthCheck",
    "AdaptiveConcurrency",
    "BreakerPolicy",
    "BulkheadPolicy",
    "Duration",
    "Fallback",
    "HeaderEdits",
    "HedgeSpec",
    "LoadBalancing",
    "OutlierDetection",
    "RateLimit",
    "RetryBudgetSpec",
    "RetryPolicy",
    "Rewrite",
    "UpstreamTLS",
    "parse_duration",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like "500ms", "2s", "1.5m", "1h"; ValueError for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise ValueError(f'must be a duration (seconds, or a string like "500ms", "2s"), got {value!r}')


def _duration_field(value: Any) -> Any:
    return None if value is None else parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration_field)]
Hashable = Literal["ip", "path", "route"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Request headers the gateway drops or replaces before a request key is read: no key can be made of them.
_UNKEYED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
        "expect",
        "x-real-ip",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)


def _check_key(value: str) -> str:
    """A request key: "ip", "path", "route", "header:<name>" or "cookie:<name>"."""
    kind, _, name = value.partition(":")
    if kind == "header" and name.strip().lower() in _UNKEYED_HEADERS:
        raise ValueError(
            f"{value!r} cannot be a request key: the gateway drops or sets the {name.strip()} header itself "
            '(use "ip" for the client\'s address, "header:X-Forwarded-For" for the addresses it came through)'
        )
    if value in ("ip", "path", "route") or (kind in ("header", "cookie") and name.strip()):
        return value
    raise ValueError(f'must be "ip", "path", "route", "header:<name>" or "cookie:<name>", got {value!r}')


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an RFC 9110 token: a header name
_CTL = re.compile(r"[\x00-\x1f\x7f]")


def _latin1(value: str, what: str) -> str:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} must be latin-1 text (it goes into an HTTP head)") from None
    return value


def _header_name(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{value!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)")
    return value


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"header value {value!r} must not contain CR, LF or NUL")
    return _latin1(value, "header value")


def _head_path(value: str, what: str) -> str:
    """A path that goes into a request line: printable latin-1, no spaces or control characters."""
    _latin1(value, what)
    if " " in value or _CTL.search(value):
        raise ValueError(f"{what} {value!r} must not contain spaces or control characters (CR, LF, tab, ...)")
    return value


RequestKey = Annotated[str, BeforeValidator(lambda v: _check_key(v) if isinstance(v, str) else v)]

LB_POLICIES = ("round_robin", "least_conn", "least_request", "peak_ewma", "random", "ring_hash", "maglev")


class LoadBalancing(_Model):
    policy: Literal["round_robin", "least_conn", "least_request", "peak_ewma", "random", "ring_hash", "maglev"] = (
        "round_robin"
    )
    hash_on: RequestKey | None = None  # ring_hash / maglev key; default "ip"
    slow_start: Duration = Field(0.0, ge=0)  # seconds a new instance's weight ramps up over; 0: off
    slow_start_aggression: float = Field(1.0, gt=0)  # Envoy's curve: 1 linear, > 1 slower at first
    panic_threshold: float = Field(0.5, ge=0, le=1)  # fewer healthy than this share → spread over all

    @model_validator(mode="after")
    def _hash_needs_hash_policy(self) -> LoadBalancing:
        if self.hash_on is not None and self.policy not in ("ring_hash", "maglev"):
            raise ValueError(f"hash_on applies to ring_hash and maglev only, not to policy {self.policy!r}")
        return self


class ActiveHealthCheck(_Model):
    type: Literal["http", "tcp"] = "http"
    path: str = Field("/healthz", pattern=r"^/")  # http only
    expect_status: tuple[int, int] = (200, 399)  # inclusive range of passing statuses
    interval: Duration = Field(5.0, gt=0)
    timeout: Duration = Field(1.0, gt=0)
    rise: int = Field(2, ge=1)  # consecutive passes before a failed instance takes traffic again
    fall: int = Field(3, ge=1)  # consecutive failures before an instance is taken out
    wait_for_pass: bool = False  # an instance new to the route takes traffic only once a check has passed it

    @field_validator("path")
    @classmethod
    def _path_fits_a_request_line(cls, value: str) -> str:
        return _head_path(value, "health check path")


class OutlierDetection(_Model):
    consecutive_5xx: int = Field(5, ge=0)  # 0: off
    consecutive_gateway_errors: int = Field(0, ge=0)  # 502/503/504 and connect failures; 0: off
    interval: Duration = Field(10.0, gt=0)  # success-rate analysis and un-ejection period
    base_ejection_time: Duration = Field(30.0, gt=0)  # × number of ejections so far
    max_ejection_time: Duration = Field(300.0, ge=0)
    max_ejection_percent: float = Field(10.0, ge=0, le=100)
    success_rate: bool = True
    success_rate_minimum_hosts: int = Field(5, ge=0)
    success_rate_request_volume: int = Field(100, ge=1)
    success_rate_stdev_factor: float = Field(1.9, ge=0)


RetryOn = Literal["connect_failure", "reset", "timeout", "502", "503", "504", "5xx"]
FallbackOn = Literal["breaker_open", "rate_limited", "no_instance", "upstream_failed", "timeout", "overloaded"]


def _default_retry_on() -> list[RetryOn]:
    return ["connect_failure", "reset"]


def _default_fallback_on() -> list[FallbackOn]:
    return ["breaker_open", "no_instance", "upstream_failed", "timeout"]


class RetryBudgetSpec(_Model):
    percent: float = Field(20.0, ge=0, le=100)  # retries may be this share of the active requests …
    min_retries: int = Field(3, ge=0)  # … but at least this many at once


class RetryPolicy(_Model):
    attempts: int = Field(2, ge=0, le=10)  # retries after the first try (the route's `retries` when absent)
    # Statuses may be written as numbers: `on: [connect_failure, 503]`.
    on: list[Annotated[RetryOn, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]] = Field(
        default_factory=_default_retry_on
    )
    non_idempotent: bool = False  # also retry POST/PATCH/... (only when no byte of the response arrived)
    per_try_timeout: Duration | None = Field(None, gt=0)  # the route's read_timeout when absent
    backoff_base: Duration = Field(0.0, ge=0)  # first retry waits up to this (full jitter); 0: at once
    backoff_max: Duration = Field(0.25, ge=0)
    budget: RetryBudgetSpec | None = Field(default_factory=lambda: RetryBudgetSpec())


class HedgeSpec(_Model):
    """Request hedging: an idempotent request with its body complete that has no response head after `delay` is
    also sent to another instance (counted as a retry in the route's retry budget); the first head wins."""

    delay: Duration = Field(gt=0)  # after the first try started (and between further hedges)
    max_hedges: int = Field(1, ge=1, le=3)  # extra tries at most


class HeaderEdits(_Model):
    set: dict[str, str] = Field(default_factory=dict)  # replace (or add) the header
    add: dict[str, str] = Field(default_factory=dict)  # add a line, keeping any already there
    remove: list[str] = Field(default_factory=list)  # names, case-insensitive

    @model_validator(mode="after")
    def _valid_header_lines(self) -> HeaderEdits:
        for name, value in [*self.set.items(), *self.add.items()]:
            _header_name(name)
            _header_value(value)
        for name in self.remove:
            _header_name(name)
        return self


class Rewrite(_Model):
    path: str | None = None  # replacement for the part matched by `path_regex` (or the whole path), e.g. "/v2/\\1"
    path_regex: str | None = None  # Python regex over the path sent to the instance (after strip_prefix)
    request_headers: HeaderEdits | None = None
    response_headers: HeaderEdits | None = None

    @model_validator(mode="after")
    def _regex_compiles(self) -> Rewrite:
        # Compiled as the gateway does (over the path's bytes), and the replacement tried, so that a rewrite
        # that would fail on each request is refused when the route is loaded.
        if self.path is not None:
            _head_path(self.path, "rewrite path")
        if self.path_regex is not None:
            if self.path is None:
                raise ValueError("path_regex needs `path`, the replacement")
            try:
                pattern = re.compile(self.path_regex.encode())
            except re.error as exc:
                raise ValueError(f"path_regex {self.path_regex!r} is not a valid regular expression: {exc}") from exc
            try:
                pattern.sub(self.path.encode(), b"")
            except (re.error, IndexError) as exc:
                raise ValueError(f"path {self.path!r} is not a valid replacement for path_regex: {exc}") from exc
        return self


class AccessLogSpec(_Model):
    path: str  # JSON lines file; relative paths are resolved against jishi.yaml's folder
    sample: float = Field(1.0, gt=0, le=1)  # share of successful requests logged; errors are always logged


class RateLimit(_Model):
    algorithm: Literal["token_bucket", "gcra", "sliding_window", "fixed_window", "leaky_bucket"] = "token_bucket"
    requests: int = Field(ge=1)  # requests allowed per `period` …
    period: Duration = Field(1.0, gt=0)
    burst: int | None = Field(None, ge=1)  # token bucket / GCRA burst; default `requests`
    key: RequestKey = "ip"  # one limit per client IP, per header/cookie value, or one for the whole route
    redis: str | None = None  # redis://host:port/db: one limit shared by every gateway worker and host
    redis_timeout: Duration = Field(0.1, gt=0)  # a Redis decision slower than this is made locally instead
    shadow: bool = False  # only count and log what would be refused

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"redis must be a redis://, rediss:// or unix:// URL, got {value!r}")
        return value


class BulkheadPolicy(_Model):
    max_concurrent: int = Field(ge=1)
    max_wait: Duration = Field(0.0, ge=0)  # queue this long for a slot, then 503
    max_queue: int = Field(0, ge=0)


class AdaptiveConcurrency(_Model):
    algorithm: Literal["aimd", "gradient"] = "gradient"
    initial_limit: int = Field(20, ge=1)
    min_limit: int = Field(1, ge=1)
    max_limit: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _limits_in_order(self) -> AdaptiveConcurrency:
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise ValueError(
                f"concurrency needs min_limit <= initial_limit <= max_limit, got {self.min_limit}, "
                f"{self.initial_limit}, {self.max_limit}"
            )
        return self


class BreakerPolicy(_Model):
    window: Literal["count", "time"] = "count"
    window_size: int = Field(100, ge=1)  # calls (count) or seconds (time)
    minimum_calls: int = Field(20, ge=1)
    failure_rate: float = Field(50.0, gt=0, le=100)  # percent that opens it
    slow_call_rate: float = Field(100.0, gt=0, le=100)
    slow_call_duration: Duration = Field(60.0, gt=0)
    wait_in_open: Duration = Field(30.0, gt=0)
    open_backoff_multiplier: float = Field(1.0, ge=1)
    max_wait_in_open: Duration | None = Field(None, gt=0)
    permitted_calls_in_half_open: int = Field(5, ge=1)
    max_wait_in_half_open: Duration = Field(60.0, gt=0)
    failure_statuses: list[int] = Field(default_factory=lambda: [500, 502, 503, 504])

    @model_validator(mode="after")
    def _open_waits_in_order(self) -> BreakerPolicy:
        if self.max_wait_in_open is not None and self.max_wait_in_open < self.wait_in_open:
            raise ValueError(
                f"breaker max_wait_in_open ({self.max_wait_in_open:g} s) must be at least wait_in_open "
                f"({self.wait_in_open:g} s)"
            )
        return self


class Fallback(_Model):
    status: int = Field(200, ge=100, le=599)
    body: str = ""
    content_type: str = "application/json"
    on: list[FallbackOn] = Field(default_factory=_default_fallback_on)

    @model_validator(mode="after")
    def _a_final_answer(self) -> Fallback:
        _latin1(self.content_type, "fallback content_type")
        if _CTL.search(self.content_type):
            raise ValueError(f"fallback content_type {self.content_type!r} must not contain control characters")
        if self.status < 200:
            raise ValueError(f"fallback status {self.status} is not a final answer (1xx)")
        if self.status in (204, 304) and self.body:
            raise ValueError(f"fallback status {self.status} has no body; drop `body` or pick another status")
        return self


class UpstreamTLS(_Model):
    """TLS from the gateway to the instances (an instance's port speaks TLS or it does not: give every route to a
    service the same setting, e.g. in `services.<name>.policies`)."""

    ca: str | None = None  # PEM file of the CA(s) that sign the instances' certificates; None: the system's
    verify: bool = True  # check the certificate chain and name; false only for testing
    server_name: str | None = None  # SNI and the name checked; None: the instance's address
    cert: str | None = None  # client certificate (mutual TLS), with `key`
    key: str | None = None

    @model_validator(mode="after")
    def _cert_with_key(self) -> UpstreamTLS:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both `cert` and `key`")
        return self
