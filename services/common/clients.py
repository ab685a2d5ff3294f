"""Outbound channels: credentials, retries on UNAVAILABLE, and deadline propagation."""

from __future__ import annotations

import collections
import json

import grpc

from services.common.server import remaining_time

# Retries are declared in the channel's service config (gRPC's own retry machinery), so every
# stub call gets them without a hand-written loop.
RETRY_SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{}],
        "retryPolicy": {
            "maxAttempts": 4,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]
})


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class OutboundInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the credential and, inside an RPC handler, the caller's remaining deadline."""

    def __init__(self, api_key: str | None, default_timeout: float | None):
        self.api_key = api_key
        self.default_timeout = default_timeout

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = list(details.metadata or [])
        if self.api_key and not any(k == "authorization" for k, _ in metadata):
            metadata.append(("authorization", f"Bearer {self.api_key}"))
        timeout = details.timeout
        if timeout is None:
            timeout = remaining_time(self.default_timeout)
        else:
            inherited = remaining_time()
            timeout = timeout if inherited is None else min(timeout, inherited)
        return _CallDetails(details.method, timeout, metadata, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def open_channel(
    address: str,
    api_key: str | None = None,
    *,
    default_timeout: float | None = 30.0,
    retries: bool = True,
    max_message_bytes: int = 64 * 1024 * 1024,
) -> grpc.Channel:
    """An insecure channel (mesh or loopback) with credentials, retries and deadlines."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.service_config", RETRY_SERVICE_CONFIG if retries else "{}"),
    ]
    channel = grpc.insecure_channel(address, options=options)
    return grpc.intercept_channel(channel, OutboundInterceptor(api_key, default_timeout))
