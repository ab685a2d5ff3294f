"""Stubs of the four services, connected with credentials, retries and a default deadline."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import grpc

from services.common.clients import open_channel
from services.common.config import SERVICE_DEFAULTS, SERVICE_NAMES

SERVICES: tuple[str, ...] = tuple(SERVICE_DEFAULTS)

# The environment variable holding the credential of command-line and script callers.
API_KEY_ENV = "MKT_API_KEY"

# Without an explicit deadline a call gives up after this many seconds, so a stuck server
# never hangs a script; long calls pass their own `timeout=`.
DEFAULT_TIMEOUT_S = 30.0


def _check(service: str) -> str:
    if service not in SERVICE_NAMES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    return service


def messages(service: str) -> ModuleType:
    """The generated message module of a service (`marketing.<svc>.v1.<svc>_service_pb2`).

    Raises ModuleNotFoundError when the service's contract has not been generated."""
    _check(service)
    return importlib.import_module(f"marketing.{service}.v1.{service}_service_pb2")


def _grpc_module(service: str) -> ModuleType:
    return importlib.import_module(f"marketing.{service}.v1.{service}_service_pb2_grpc")


def resolve_address(service: str, address: str | None = None) -> str:
    """The address to dial: the argument, else `<SERVICE>_ADDR`, else the local default port."""
    _check(service)
    if address:
        return address
    env = os.environ.get(f"{service.upper()}_ADDR")
    if env:
        return env
    return f"127.0.0.1:{SERVICE_DEFAULTS[service]['grpc_port']}"


def resolve_api_key(api_key: str | None = None) -> str | None:
    """The credential to present: the argument, else `MKT_API_KEY`, else none."""
    return api_key or os.environ.get(API_KEY_ENV) or None


def connect(
    service: str,
    address: str | None = None,
    api_key: str | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    retries: bool = True,
) -> Any:
    """A stub of `service` ("profile", "segment", "scoring" or "delivery").

    The channel presents `api_key` (or `MKT_API_KEY`) as a bearer token, retries calls that
    fail with UNAVAILABLE with exponential backoff (declared in the channel's service config),
    and gives every call without its own `timeout=` a deadline of `timeout` seconds. The
    stub's channel is kept as `stub.channel` so callers can close it."""
    full_name = SERVICE_NAMES[_check(service)]
    stub_class = getattr(_grpc_module(service), f"{full_name.rsplit('.', 1)[1]}Stub")
    channel = open_channel(resolve_address(service, address), resolve_api_key(api_key),
                           default_timeout=timeout, retries=retries)
    stub = stub_class(channel)
    stub.channel = channel
    return stub


class Suite:
    """Lazily connected stubs of all four services sharing one credential.

    `suite.profile`, `suite.segment`, `suite.scoring`, `suite.delivery` are stubs; `suite.pb(
    "profile")` is the message module. Addresses come from `addresses` or the environment."""

    def __init__(self, api_key: str | None = None, addresses: dict[str, str] | None = None,
                 *, timeout: float | None = DEFAULT_TIMEOUT_S):
        self.api_key = resolve_api_key(api_key)
        self.addresses = dict(addresses or {})
        self.timeout = timeout
        self._stubs: dict[str, Any] = {}

    def stub(self, service: str) -> Any:
        if service not in self._stubs:
            self._stubs[service] = connect(service, self.addresses.get(service), self.api_key,
                                           timeout=self.timeout)
        return self._stubs[service]

    def with_key(self, api_key: str) -> Suite:
        """The same suite seen by another credential (for example a second approver)."""
        return Suite(api_key, self.addresses, timeout=self.timeout)

    @staticmethod
    def pb(service: str) -> ModuleType:
        return messages(service)

    def __getattr__(self, name: str) -> Any:
        if name in SERVICE_NAMES:
            return self.stub(name)
        raise AttributeError(name)

    def close(self) -> None:
        for stub in self._stubs.values():
            stub.channel.close()
        self._stubs.clear()

    def __enter__(self) -> Suite:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_unimplemented(error: BaseException) -> bool:
    """True when a call failed because the server does not offer the RPC."""
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNIMPLEMENTED
