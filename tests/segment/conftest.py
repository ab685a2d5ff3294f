"""Fixtures: profile stores on SQLite, PostgreSQL and DuckDB, and a population builder."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from services.common import profile_tables as pt
from services.segment.catalog import load_catalog
from services.segment.store_setup import create_read_path_tables

NOW = int(dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp() * 1000)
DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


_PG = postgres_available()


def make_store_engine(kind: str, tmp_path) -> tuple[sa.Engine, callable]:
    """A fresh, empty profile store of the given kind and a function that drops it."""
    if kind == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path}/profile.db")
        pt.metadata.create_all(engine)
        return engine, engine.dispose
    if kind == "duckdb":
        engine = sa.create_engine(f"duckdb:///{tmp_path}/profile.duckdb")
        create_read_path_tables(engine)
        return engine, engine.dispose
    schema = f"segtest_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(PG_URL, connect_args={"options": f"-c search_path={schema}"})
    pt.metadata.create_all(engine)

    def drop():
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return engine, drop


ENGINES = [
    "sqlite",
    pytest.param("postgresql", marks=[
        pytest.mark.postgres,
        pytest.mark.skipif(not _PG, reason="PostgreSQL is not reachable"),
    ]),
    "duckdb",
]


@pytest.fixture(params=ENGINES)
def store_engine(request, tmp_path):
    engine, drop = make_store_engine(request.param, tmp_path)
    yield engine
    drop()


@pytest.fixture
def sqlite_engine(tmp_path):
    engine, drop = make_store_engine("sqlite", tmp_path)
    yield engine
    drop()


class Population:
    """Builds rows in memory, then writes them with one bulk insert per table."""

    def __init__(self):
        self.rows: dict[sa.Table, list[dict]] = {t: [] for t in pt.READ_PATH_TABLES}
        self.next_id = 1
        self.next_event = 1
        self.ids: dict[str, int] = {}
        self.catalog: dict[str, str] = {}

    def attribute_type(self, name: str, value_type: str) -> None:
        if name not in self.catalog:
            self.catalog[name] = value_type
            self.rows[pt.attribute_catalog].append(
                dict(name=name, value_type=value_type, description="", pii=False, created_ms=0))

    def user(self, external_id: str, **attributes) -> int:
        uid = self.next_id
        self.next_id += 1
        self.ids[external_id] = uid
        self.rows[pt.profiles].append(dict(
            id=uid, external_id=external_id, created_ms=0, updated_ms=0, time_zone="UTC",
            notifications_disabled=False, app_uninstalled=False))
        for name, value in attributes.items():
            self.attr(uid, name, value)
        return uid

    def attr(self, uid: int, name: str, value) -> None:
        row = dict(user_id=uid, name=name, str_value=None, num_value=None, bool_value=None,
                   ts_value=None, list_value=None)
        if isinstance(value, bool):
            self.attribute_type(name, "bool")
            row["bool_value"] = value
        elif isinstance(value, (int, float)):
            self.attribute_type(name, "number")
            row["num_value"] = float(value)
        elif isinstance(value, list):
            self.attribute_type(name, "string_list")
            row["list_value"] = value
        else:
            self.attribute_type(name, "string")
            row["str_value"] = value
        self.rows[pt.profile_attributes].append(row)

    def event(self, uid: int, event_type: str, ts_ms: int, value: float | None = None,
              **properties) -> None:
        self.rows[pt.events].append(dict(
            id=self.next_event, event_id=f"e{self.next_event}", user_id=uid,
            event_type=event_type, ts_ms=ts_ms, value=value, properties=properties or None))
        self.next_event += 1

    def tag(self, uid: int, tag: str, expires_ms: int | None = None) -> None:
        self.rows[pt.profile_tags].append(dict(user_id=uid, tag=tag, expires_ms=expires_ms))

    def traits(self, uid: int, **values) -> None:
        row = dict(user_id=uid, recency_days=None, frequency=0, monetary=0.0, r_score=None,
                   f_score=None, m_score=None, rfm_group=None, lifecycle_stage=None,
                   first_seen_ms=None, last_seen_ms=None, last_purchase_ms=None, as_of_ms=None,
                   updated_ms=0)
        row.update(values)
        self.rows[pt.computed_traits].append(row)

    def score(self, uid: int, model: str, score: float) -> None:
        self.rows[pt.scores].append(dict(user_id=uid, model_name=model, score=score,
                                         model_version="1", scored_ms=0))

    def consent(self, uid: int, channel: str, subscribed: bool) -> None:
        self.rows[pt.consents].append(dict(user_id=uid, channel=channel, subscribed=subscribed,
                                           updated_ms=0, source=""))

    def write(self, engine: sa.Engine):
        with engine.begin() as connection:
            for table in pt.READ_PATH_TABLES:
                if self.rows[table]:
                    connection.execute(table.insert(), self.rows[table])
        return load_catalog(engine)

    def external(self, ids) -> set[str]:
        names = {v: k for k, v in self.ids.items()}
        return {names[i] for i in ids}
