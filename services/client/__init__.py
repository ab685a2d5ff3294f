"""Typed convenience layer over the generated stubs: connections, pagination, deadlines, errors."""

from services.client.connection import (
    is_unimplemented,
    SERVICES,
    Suite,
    connect,
    messages,
    resolve_address,
    resolve_api_key,
)
from services.client.errors import describe_error, status_name
from services.client.pagination import paginate, pages

__all__ = [
    "SERVICES",
    "Suite",
    "connect",
    "describe_error",
    "is_unimplemented",
    "messages",
    "pages",
    "paginate",
    "resolve_address",
    "resolve_api_key",
    "status_name",
]
