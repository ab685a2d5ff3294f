"""Typed domain errors and their mapping to gRPC statuses with google.rpc rich details."""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

log = logging.getLogger(__name__)

DOMAIN = "marketing.suite"


class ServiceError(Exception):
    """Base of every error a handler may raise; carries a gRPC code and rich details."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description

    def details(self) -> list:
        """The google.rpc detail messages to attach; an ErrorInfo is always first."""
        return [error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN)]

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.description)
        for detail in self.details():
            status.details.add().Pack(detail)
        return status


class InvalidArgument(ServiceError):
    """A request field is missing or malformed; each violation names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        field: str | None = None,
        description: str | None = None,
        *,
        violations: Sequence[tuple[str, str]] | None = None,
    ):
        items = list(violations or [])
        if field is not None:
            items.insert(0, (field, description or "is invalid"))
        if not items:
            raise ValueError("InvalidArgument needs a field or violations")
        self.violations = items
        super().__init__("; ".join(f"{f}: {d}" for f, d in items))

    def details(self) -> list:
        request = error_details_pb2.BadRequest()
        for field, description in self.violations:
            request.field_violations.add(field=field, description=description)
        return [*super().details(), request]


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"

    def __init__(self, resource_type: str, resource_name: str, description: str | None = None):
        self.resource_type, self.resource_name = resource_type, resource_name
        super().__init__(description or f"{resource_type} {resource_name!r} not found")

    def details(self) -> list:
        info = error_details_pb2.ResourceInfo(
            resource_type=self.resource_type, resource_name=self.resource_name
        )
        return [*super().details(), info]


class AlreadyExists(NotFound):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"

    def __init__(self, resource_type: str, resource_name: str, description: str | None = None):
        super().__init__(
            resource_type, resource_name, description or f"{resource_type} {resource_name!r} exists"
        )


class FailedPrecondition(ServiceError):
    """The system is not in the state the call needs (for example an unapproved plan)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"

    def __init__(self, description: str, violations: Iterable[tuple[str, str, str]] = ()):
        self.violations = list(violations)
        super().__init__(description)

    def details(self) -> list:
        failure = error_details_pb2.PreconditionFailure()
        for type_, subject, description in self.violations:
            failure.violations.add(type=type_, subject=subject, description=description)
        return [*super().details(), failure] if self.violations else super().details()


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Aborted(ServiceError):
    """A concurrent change won; the client may retry the whole read-modify-write."""

    code = grpc.StatusCode.ABORTED
    reason = "ABORTED"


class Unavailable(ServiceError):
    """A backing store is unreachable; the client should retry after ``retry_after_s``."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "BACKEND_UNAVAILABLE"

    def __init__(self, description: str, retry_after_s: float = 1.0):
        self.retry_after_s = retry_after_s
        super().__init__(description)

    def details(self) -> list:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(self.retry_after_s * 1000))
        return [*super().details(), error_details_pb2.RetryInfo(retry_delay=delay)]


def translate(exc: BaseException) -> ServiceError | None:
    """Maps infrastructure failures to domain errors; None for a genuine bug."""
    if isinstance(exc, ServiceError):
        return exc
    try:
        import redis.exceptions as redis_errors
    except ImportError:  # pragma: no cover - redis is a dependency
        redis_errors = None
    if redis_errors and isinstance(
        exc, (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError)
    ):
        return Unavailable(f"redis unavailable: {type(exc).__name__}", retry_after_s=1.0)
    from sqlalchemy import exc as sa_errors

    if isinstance(exc, sa_errors.OperationalError) and _looks_like_connection_error(exc):
        return Unavailable("database unavailable", retry_after_s=1.0)
    if isinstance(exc, sa_errors.DBAPIError) and exc.connection_invalidated:
        return Unavailable("database connection lost", retry_after_s=1.0)
    if isinstance(exc, sa_errors.TimeoutError):  # connection pool exhausted
        return Unavailable("database connection pool exhausted", retry_after_s=0.5)
    # Hot paths run some lookups on the driver's own cursor, whose errors reach here
    # unwrapped; PEP 249 names the classes alike in every driver.
    if _is_driver_error(exc, ("OperationalError", "InterfaceError")) \
            and _looks_like_connection_error(exc):
        return Unavailable("database unavailable", retry_after_s=1.0)
    return None


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (from a driver, or wrapped by SQLAlchemy) says that the connection to
    the database server is gone: closed or terminated by the server, or broken on the way.
    A locked SQLite database or a statement timeout is not that."""
    from sqlalchemy import exc as sa_errors

    if not (isinstance(exc, (sa_errors.OperationalError, sa_errors.InterfaceError))
            or _is_driver_error(exc, ("OperationalError", "InterfaceError"))):
        return False
    text = str(getattr(exc, "orig", exc)).lower()
    return any(marker in text for marker in (
        "connection", "server closed", "terminating", "shutting down"))


def _is_driver_error(exc: BaseException, names: tuple[str, ...]) -> bool:
    return any(cls.__name__ in names and cls.__module__.split(".")[0] != "sqlalchemy"
               for cls in type(exc).__mro__)


def _looks_like_connection_error(exc) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    markers = (
        "connection", "could not connect", "server closed", "terminating", "database is locked",
        "timeout", "shutting down", "no such host", "refused",
    )
    return any(marker in text for marker in markers)


def status_for(exc: BaseException) -> status_pb2.Status:
    """The status sent for ``exc``; bugs become INTERNAL without leaking the traceback."""
    known = translate(exc)
    if known is not None:
        return known.to_status()
    status = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN))
    return status


def rich_details(rpc_error: grpc.RpcError) -> list:
    """Client side: the google.rpc detail messages of a failed call, unpacked."""
    from grpc_status import rpc_status

    status = rpc_status.from_call(rpc_error)
    if status is None:
        return []
    out = []
    for any_detail in status.details:
        for cls in (
            error_details_pb2.BadRequest,
            error_details_pb2.ErrorInfo,
            error_details_pb2.ResourceInfo,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.RetryInfo,
        ):
            if any_detail.Is(cls.DESCRIPTOR):
                message = cls()
                any_detail.Unpack(message)
                out.append(message)
    return out


def field_violations(rpc_error: grpc.RpcError) -> list[str]:
    """Client side: the fields named by BadRequest details of a failed call."""
    return [
        v.field
        for d in rich_details(rpc_error)
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    ]
