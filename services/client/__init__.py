"""Typed convenience layer over the generated stubs: connections, pagination, deadlines, errors."""

from services.client.connection import (
    SERVICES,
    Suite,
    connect,
    is_unimplemented,
    messages,
    resolve_address,
    resolve_api_key,
)
from services.client.errors import describe_error, status_name
from services.client.pagination import pages, paginate

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
