"""One-line descriptions of failed calls: status code, message and the field at fault."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from services.common.errors import rich_details


def status_name(rpc_error: grpc.RpcError) -> str:
    code = rpc_error.code() if hasattr(rpc_error, "code") else None
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _first_line(text: str) -> str:
    return " ".join((text or "").split()).strip()


def describe_error(rpc_error: BaseException) -> str:
    """`INVALID_ARGUMENT: rule: unknown field 'agee' (line 1, column 1)`-style summary.

    Field violations (BadRequest) are listed as `field: description`; a missing resource
    names it; precondition failures name their subjects; UNAVAILABLE says when to retry.
    Anything that is not a gRPC error is described by its type and message."""
    if not isinstance(rpc_error, grpc.RpcError):
        return f"{type(rpc_error).__name__}: {rpc_error}"
    code = status_name(rpc_error)
    message = _first_line(rpc_error.details() if hasattr(rpc_error, "details") else "")
    try:
        details = rich_details(rpc_error)
    except Exception:  # noqa: BLE001 - a malformed status detail must not hide the error
        details = []
    parts: list[str] = []
    for detail in details:
        if isinstance(detail, error_details_pb2.BadRequest):
            parts.extend(f"{v.field}: {_first_line(v.description)}"
                         for v in detail.field_violations)
    text = "; ".join(parts) if parts else message
    extras: list[str] = []
    for detail in details:
        if isinstance(detail, error_details_pb2.ResourceInfo) and detail.resource_name \
                and detail.resource_name not in text:
            extras.append(f"{detail.resource_type} {detail.resource_name}".strip())
        elif isinstance(detail, error_details_pb2.PreconditionFailure):
            for v in detail.violations:
                piece = f"{v.subject}: {_first_line(v.description)}" if v.subject \
                    else _first_line(v.description)
                if piece and piece not in text:
                    extras.append(piece)
        elif isinstance(detail, error_details_pb2.RetryInfo):
            delay = detail.retry_delay.seconds + detail.retry_delay.nanos / 1e9
            extras.append(f"retry after {delay:g}s")
    if extras:
        text = f"{text} ({'; '.join(extras)})" if text else "; ".join(extras)
    if code == "UNAVAILABLE" and not details:
        text = f"service not reachable ({text})" if text else "service not reachable"
    if code == "UNIMPLEMENTED" and not details:
        text = f"the server does not offer this call ({text})" if text else \
            "the server does not offer this call"
    return f"{code}: {text}" if text else code
