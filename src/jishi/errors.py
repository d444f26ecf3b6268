"""The one exception hierarchy of jishi.

    JishiError                      base of everything jishi raises on purpose
    ├── ConfigError                 a jishi.yaml (or flag) is wrong; names file, line, field and fix
    ├── StoreError                  the state store refused an operation; a plain one is the store's own state
    │                               (closed, busy), not the request's fault: asking again later may work
    │   ├── CompactedError          a watch or read asked for a revision that was compacted away
    │   ├── FutureRevisionError     a read or watch asked for a revision that does not exist yet
    │   ├── LeaseNotFoundError      the lease was never granted, was revoked, or expired
    │   └── InvalidRequestError     the request itself is wrong (a bad argument, a txn writing a key twice);
    │                               asking again cannot help
    ├── NotFoundError               a named service, instance, route or key does not exist
    ├── ControlPlaneError           the control plane answered with an error (carries code and status)
    │   └── ControlPlaneUnavailable the control plane could not be reached
    ├── ProcessError                a supervised process could not be started or stopped
    ├── NotificationError           an alert notification (webhook, e-mail) could not be delivered
    └── ServiceCallError            a call through `jishi.client` failed; names the service and every attempt
        ├── ServiceUnavailable      no instance of the service is in rotation (or every one's breaker is open)
        └── CallRejected            the client's own bulkhead refused the call (too many calls in flight)

Every error carries a human message; those that cross the API also carry a stable machine `code`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class JishiError(Exception):
    """Base of every error jishi raises on purpose."""

    code = "jishi_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(JishiError):
    """A configuration file or option is invalid."""

    code = "invalid_config"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.file, self.line, self.field, self.fix = file, line, field, fix
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        text = f"{where}{field + ': ' if field else ''}{message}"
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class StoreError(JishiError):
    code = "store_error"


class CompactedError(StoreError):
    code = "compacted"

    def __init__(self, requested: int, compact_revision: int) -> None:
        self.requested, self.compact_revision = requested, compact_revision
        super().__init__(f"revision {requested} was compacted; the oldest available revision is {compact_revision}")


class FutureRevisionError(StoreError):
    code = "future_revision"


class LeaseNotFoundError(StoreError):
    code = "lease_not_found"

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__(f"lease {lease_id} does not exist (never granted, revoked or expired)")


class InvalidRequestError(StoreError):
    """A store call that is wrong in itself (a non-positive TTL, a txn writing one key twice): never retry it."""

    code = "invalid_request"


class NotFoundError(JishiError):
    code = "not_found"


class ControlPlaneError(JishiError):
    code = "control_plane_error"

    def __init__(self, message: str, *, code: str = "control_plane_error", status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ControlPlaneUnavailable(ControlPlaneError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="unavailable", status=0)


class ProcessError(JishiError):
    code = "process_error"


class NotificationError(JishiError):
    """An alert notification could not be delivered; the message names the notifier, target and every try."""

    code = "notification_failed"


class Attempt(NamedTuple):
    """One try of a service call: which instance, where, and why it failed ("" when it succeeded)."""

    instance: str
    address: str
    error: str = ""
    status: int | None = None  # the HTTP status it answered, if it answered

    def __str__(self) -> str:
        return f"{self.instance} ({self.address}): {self.error or 'ok'}"


class ServiceCallError(JishiError):
    """A call to a service failed. `attempts` lists every try (instance, address, why), oldest first."""

    code = "service_call_failed"

    def __init__(self, message: str, *, service: str, attempts: Sequence[Attempt] = ()) -> None:
        self.service = service
        self.attempts = tuple(attempts)
        if self.attempts:
            message += "; tried " + "; ".join(str(a) for a in self.attempts)
        super().__init__(message)


class ServiceUnavailable(ServiceCallError):
    code = "service_unavailable"


class CallRejected(ServiceCallError):
    code = "call_rejected"
