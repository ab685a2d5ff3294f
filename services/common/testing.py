"""Test helpers: real servers on loopback port 0, credentials per role, backend discovery."""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
from typing import Callable, Iterator

import grpc

from services.common.clients import open_channel
from services.common.config import Settings, parse_api_keys
from services.common.server import ServiceDefinition, SuiteServer, create_server

# Credentials every test server accepts: key -> (roles, subject).
TEST_API_KEYS = (
    "operator-key:operator:olivia;operator2-key:operator:oscar;"
    "approver-key:approver:alice;approver2-key:approver:bob;"
    "admin-key:admin:root;service-key:service:svc-internal"
)
ROLE_KEYS = {
    "operator": "operator-key",
    "approver": "approver-key",
    "admin": "admin-key",
    "service": "service-key",
}


def service_settings(service: str, data_dir: pathlib.Path, **overrides) -> Settings:
    """Settings for a service under test: loopback, no metrics port, test credentials."""
    values = dict(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        data_dir=pathlib.Path(data_dir),
        api_keys=parse_api_keys(TEST_API_KEYS),
        allow_anonymous=False,
        shutdown_grace_s=1.0,
    )
    values.update(overrides)
    # Tests never touch a DATABASE_URL of the environment unless they pass one explicitly.
    values.setdefault("database_url", f"sqlite:///{pathlib.Path(data_dir) / f'{service}.db'}")
    values.setdefault("profile_read_database_url",
                      f"sqlite:///{pathlib.Path(data_dir) / 'profile.db'}")
    return Settings.from_env(service).replace(**values)


@contextlib.contextmanager
def running_server(
    settings: Settings, definitions: list[ServiceDefinition]
) -> Iterator[tuple[SuiteServer, str]]:
    """Starts a real server on loopback port 0; yields it and its address."""
    server, port = create_server(settings, definitions, address="127.0.0.1:0")
    server.start()
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def channel(address: str, role: str | None = "operator", *, key: str | None = None,
            retries: bool = False) -> grpc.Channel:
    """A channel presenting the test credential of ``role`` (or ``key``; None for none)."""
    api_key = key if key is not None else (ROLE_KEYS[role] if role else None)
    return open_channel(address, api_key, retries=retries, default_timeout=30.0)


def reachable(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def postgres_url() -> str | None:
    """A PostgreSQL URL for integration tests: TEST_POSTGRES_URL, else the local server."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        return url
    if reachable("127.0.0.1", 5432):
        return "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    return None


def external_redis_url() -> str | None:
    """A real external Redis for integration tests: TEST_REDIS_URL, else the local server."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        return url
    if reachable("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/15"
    return None


@contextlib.contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A URL whose connections use a fresh PostgreSQL schema, dropped afterwards, so tests
    running side by side never see each other's tables."""
    import uuid

    from sqlalchemy import create_engine, text

    base = postgres_url()
    if base is None:
        raise RuntimeError("PostgreSQL is not reachable")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def call_code(fn: Callable[[], object]) -> grpc.StatusCode:
    """Runs a stub call expected to fail and returns its status code."""
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code()
    raise AssertionError("the call succeeded")
