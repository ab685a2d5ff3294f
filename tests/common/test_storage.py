"""Engines and the embedded Redis: real SQLite, real redis-server, PostgreSQL when reachable."""

from __future__ import annotations

import pytest
import redis
import sqlalchemy as sa

from services.common.db import make_engine
from services.common.redis_client import EmbeddedRedis, connect_redis
from services.common import profile_tables


def test_sqlite_engine_uses_wal_and_read_only_refuses_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 'x' / 'profile.db'}"
    engine = make_engine(url)
    profile_tables.metadata.create_all(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    reader = make_engine(url, read_only=True)
    with pytest.raises(sa.exc.OperationalError):
        with reader.begin() as conn:
            conn.execute(sa.insert(profile_tables.attribute_catalog).values(
                name="age", value_type="number", created_ms=0))


def test_read_path_tables_create_on_postgres_and_read_only_refuses_writes(pg_url):
    engine = make_engine(pg_url)
    profile_tables.metadata.create_all(engine)
    reader = make_engine(pg_url, read_only=True)
    with reader.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(profile_tables.events)).scalar() == 0
    with pytest.raises(sa.exc.DBAPIError):
        with reader.begin() as conn:
            conn.execute(sa.insert(profile_tables.attribute_catalog).values(
                name="age", value_type="number", created_ms=0))
    engine.dispose()
    reader.dispose()


def test_embedded_redis_is_shared_by_processes_through_its_directory(tmp_path):
    first = EmbeddedRedis(tmp_path / "redis", persistent=False)
    url = first.start()
    try:
        second = EmbeddedRedis(tmp_path / "redis", persistent=False)
        assert second.start() == url and second.process is None
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        assert redis.Redis.from_url(second.url).get("k") == b"v"
    finally:
        first.stop()
    assert EmbeddedRedis(tmp_path / "redis").running_url() is None


def test_connect_redis_honours_an_explicit_url(ext_redis_url):
    client = connect_redis(ext_redis_url)
    assert client.ping()


def test_concurrent_migrations_on_postgres_take_turns(pg_url):
    """Replicas starting together migrate the same schema without failing."""
    import concurrent.futures

    from services.common.db import migrate

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: migrate("profile", pg_url), range(4)))
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT count(*) FROM alembic_version_profile")).scalar()
    engine.dispose()
    assert versions == 1


def test_postgres_connections_dropped_while_idle_are_replaced_and_busy_ones_not_pinged(pg_url):
    # A connection idle past the threshold is pinged at checkout; one the server dropped
    # (here terminated by another session) is replaced without the caller seeing an error.
    import time

    engine = make_engine(pg_url, ping_idle_s=0.2, pool_size=1, max_overflow=0)
    killer = make_engine(pg_url)
    pings = []
    real_ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda dbapi_connection: pings.append(1) or real_ping(
        dbapi_connection)
    try:
        with engine.connect() as conn:
            first = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        # Used again at once: handed out without a ping.
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == first
        assert pings == []
        with killer.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({first})").scalar()
        time.sleep(0.4)
        with engine.connect() as conn:
            second = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        assert second != first and pings
    finally:
        engine.dispose()
        killer.dispose()
