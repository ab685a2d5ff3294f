"""Profile store migrations that reshape tables keep every row."""

from __future__ import annotations

import pytest
import redis
from alembic import command
from sqlalchemy import text

from services.common.db import alembic_config, make_engine, migrate
from services.profile.config import ProfileConfig
from services.profile.core import EVENTS_STREAM, ProfileCore

ROWS = [
    {"u": 1, "n": "age", "s": None, "v": 31.0, "b": None, "t": None},
    {"u": 1, "n": "city", "s": "Lyon", "v": None, "b": None, "t": None},
    {"u": 2, "n": "vip", "s": None, "v": None, "b": True, "t": None},
    {"u": 3, "n": "signed_up", "s": None, "v": None, "b": None, "t": 1_700_000_000_000},
]


def _table_sql(conn) -> str:
    return conn.execute(text(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'profile_attributes'"
    )).scalar_one()


def _indexes(conn) -> set[str]:
    return set(conn.execute(text(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'profile_attributes' "
        "AND name NOT LIKE 'sqlite_autoindex%'")).scalars())


def _rows(conn) -> list[tuple]:
    return [tuple(r) for r in conn.execute(text(
        "SELECT user_id, name, str_value, num_value, bool_value, ts_value "
        "FROM profile_attributes ORDER BY user_id, name"))]


def test_attributes_become_clustered_on_sqlite_and_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'profile.db'}"
    migrate("profile", url, revision="0001")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            assert "WITHOUT ROWID" not in _table_sql(conn)
            conn.execute(text(
                "INSERT INTO profile_attributes (user_id, name, str_value, num_value, bool_value, "
                "ts_value) VALUES (:u, :n, :s, :v, :b, :t)"), ROWS)
            before = _rows(conn)
        migrate("profile", url)
        with engine.begin() as conn:
            assert "WITHOUT ROWID" in _table_sql(conn)
            assert _rows(conn) == before
            assert _indexes(conn) == {"ix_profile_attributes_name_num",
                                      "ix_profile_attributes_name_str"}
            # The key still refuses a second value of the same attribute.
            duplicate = conn.execute(text(
                "INSERT OR IGNORE INTO profile_attributes (user_id, name, num_value) "
                "VALUES (1, 'age', 99)"))
            assert duplicate.rowcount == 0
        config = alembic_config("profile", url)
        command.downgrade(config, "0001")
        with engine.begin() as conn:
            assert "WITHOUT ROWID" not in _table_sql(conn)
            assert _rows(conn) == before
            assert _indexes(conn) == {"ix_profile_attributes_name_num",
                                      "ix_profile_attributes_name_str"}
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def bare_url(request, tmp_path):
    """An empty database: a SQLite file, or a fresh PostgreSQL schema when reachable."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'profile.db'}"
    return request.getfixturevalue("pg_url")


def test_publish_backlog_rows_become_announcements_due_at_once(bare_url, redis_url):
    migrate("profile", bare_url, revision="0002")
    engine = make_engine(bare_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO profiles (id, external_id, created_ms, updated_ms) "
                              "VALUES (7, 'u', 1, 1)"))
            conn.execute(text("INSERT INTO events (id, event_id, user_id, event_type, ts_ms) "
                              "VALUES (:id, :e, 7, 'view', 5)"),
                         [{"id": 1, "e": "published"}, {"id": 2, "e": "q1"}, {"id": 3, "e": "q2"}])
            conn.execute(text("INSERT INTO profile_publish_backlog (event_row_id, queued_ms) "
                              "VALUES (2, 10), (3, 11)"))
        migrate("profile", bare_url)
        core = ProfileCore(engine, redis.Redis.from_url(redis_url, decode_responses=True),
                           ProfileConfig())
        assert core.announce_left_behind() == 2
        assert [f["event_id"] for _, f in core.redis.xrange(EVENTS_STREAM)] == ["q1", "q2"]
        core.close()
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO profile_announcements (marker, stream, first_row_id, last_row_id, "
                "created_ms, due_ms) VALUES ('m', 'events', 2, 3, 20, 20)"))
        command.downgrade(alembic_config("profile", bare_url), "0002")
        with engine.begin() as conn:
            assert conn.execute(text(
                "SELECT event_row_id, queued_ms FROM profile_publish_backlog ORDER BY 1"
            )).all() == [(2, 20), (3, 20)]
    finally:
        engine.dispose()
