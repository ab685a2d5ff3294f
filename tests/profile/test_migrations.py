"""Profile store migrations that reshape tables keep every row."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from services.common.db import alembic_config, make_engine, migrate

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
