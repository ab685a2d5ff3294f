"""Feature assembly and the training population on SQLite and PostgreSQL (the same SQL)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import insert

from services.common.db import make_engine, migrate
from services.common.profile_tables import (
    attribute_catalog,
    computed_traits,
    events,
    profile_attributes,
    profiles,
)
from services.scoring.features import (
    DAY_MS,
    FeatureSpec,
    UserReader,
    iter_feature_chunks,
    load_features,
    release_connections,
)
from services.scoring.training import LabelSpec, build_dataset

CUTOFF = 1_700_000_000_000
SPECS = [
    FeatureSpec("income", "attribute", "income"),
    FeatureSpec("member", "attribute", "member", value_type="bool", default=0.0),
    FeatureSpec("city", "attribute", "city", value_type="string", default="none"),
    FeatureSpec("joined", "attribute", "joined"),
    FeatureSpec("frequency", "trait", "frequency"),
    FeatureSpec("stage", "trait", "lifecycle_stage", value_type="string", default=""),
    FeatureSpec("buys", "event", "purchase", aggregate="count"),
    FeatureSpec("spend_30d", "event", "purchase", aggregate="sum", window_days=30),
    FeatureSpec("days_since_buy", "event", "purchase", aggregate="days_since_last",
                default=999.0),
]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_features_and_population(backend, request, tmp_path):
    pg_url = (request.getfixturevalue("pg_url") if backend == "postgresql"
              else f"sqlite:///{tmp_path / 'profile.db'}")
    migrate("profile", pg_url)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(insert(attribute_catalog), [
            {"name": "income", "value_type": "number", "created_ms": 0},
            {"name": "member", "value_type": "bool", "created_ms": 0},
            {"name": "city", "value_type": "string", "created_ms": 0},
            {"name": "joined", "value_type": "timestamp", "created_ms": 0}])
        # Users 1-2 were created before the cut-off; 3 only has an old event; 4 is known only
        # by first_seen_ms; 5 appeared after the cut-off.
        conn.execute(insert(profiles), [
            {"id": u, "external_id": f"u{u}", "created_ms": CUTOFF - DAY_MS if u <= 2
             else CUTOFF + 90 * DAY_MS, "updated_ms": 0} for u in range(1, 6)])
        blank = {"num_value": None, "bool_value": None, "str_value": None, "ts_value": None}
        conn.execute(insert(profile_attributes), [{**blank, **row} for row in (
            {"user_id": 1, "name": "income", "num_value": 52.5},
            {"user_id": 1, "name": "member", "bool_value": True},
            {"user_id": 1, "name": "city", "str_value": "Lyon"},
            {"user_id": 1, "name": "joined", "ts_value": CUTOFF - 5 * DAY_MS},
            {"user_id": 2, "name": "member", "bool_value": False})])
        conn.execute(insert(computed_traits), [
            {"user_id": 1, "frequency": 3, "monetary": 0, "lifecycle_stage": "active",
             "first_seen_ms": CUTOFF - 60 * DAY_MS, "updated_ms": 0},
            {"user_id": 4, "frequency": 0, "monetary": 0, "lifecycle_stage": None,
             "first_seen_ms": CUTOFF - 400 * DAY_MS, "updated_ms": 0}])
        conn.execute(insert(events), [
            {"event_id": "a", "user_id": 1, "event_type": "purchase",
             "ts_ms": CUTOFF - 10 * DAY_MS, "value": 20.0},
            {"event_id": "b", "user_id": 1, "event_type": "purchase",
             "ts_ms": CUTOFF - 60 * DAY_MS, "value": 5.0},
            {"event_id": "c", "user_id": 3, "event_type": "purchase",
             "ts_ms": CUTOFF - 2 * DAY_MS, "value": 7.0},
            {"event_id": "d", "user_id": 3, "event_type": "purchase",
             "ts_ms": CUTOFF + 3 * DAY_MS, "value": 9.0},
            {"event_id": "e", "user_id": 2, "event_type": "purchase",
             "ts_ms": CUTOFF + 1 * DAY_MS, "value": 9.0}])
    read = make_engine(pg_url, read_only=True)
    batch = load_features(read, SPECS, user_ids=[3, 1, 99, 2], as_of_ms=CUTOFF)
    assert batch.found.tolist() == [True, True, False, True]
    assert batch.external_ids == ["u3", "u1", "", "u2"]
    row1 = batch.numeric[1]
    assert row1[0] == 52.5 and row1[1] == 1.0 and row1[3] == CUTOFF - 5 * DAY_MS
    assert row1[4] == 3 and row1[6] == 2 and row1[7] == 20.0 and row1[8] == 10.0
    assert batch.strings[2].tolist() == ["none", "Lyon", "none", "none"]
    assert batch.strings[5].tolist() == ["", "active", "", ""]
    assert batch.numeric[2, 1] == 0.0 and np.isnan(batch.numeric[2, 0])  # unknown user
    assert batch.numeric[0, 6] == 1 and batch.numeric[0, 8] == 2.0  # the later event unseen
    by_external = load_features(read, SPECS, external_ids=["u2", "ghost"], as_of_ms=CUTOFF)
    assert by_external.found.tolist() == [True, False] and by_external.user_ids[0] == 2
    assert by_external.numeric[0, 1] == 0.0 and by_external.numeric[0, 8] == 999.0
    pages = list(iter_feature_chunks(read, SPECS, as_of_ms=CUTOFF, chunk_size=2))
    assert [c.user_ids.tolist() for c in pages] == [[1, 2], [3, 4], [5]]
    np.testing.assert_array_equal(pages[0].numeric[0], row1)

    label = LabelSpec(kind="event", event_type="purchase", within_days=30)
    data = build_dataset(read, SPECS, label, CUTOFF)
    assert data.user_ids.tolist() == [1, 2, 3, 4]
    assert data.y.tolist() == [0, 1, 1, 0]
    assert_one_user_reads_match(read)
    release_connections(read)  # lookups keep driver connections outside the engine's pool
    read.dispose()
    engine.dispose()


def assert_one_user_reads_match(engine) -> None:
    """One user is read by its own statement (subqueries, not joins): the same values."""
    batch = load_features(engine, SPECS, user_ids=[1, 2, 3, 4, 5], as_of_ms=CUTOFF)
    for position, user in enumerate(batch.user_ids.tolist()):
        one = load_features(engine, SPECS, user_ids=[user], as_of_ms=CUTOFF)
        np.testing.assert_array_equal(one.numeric[0], batch.numeric[position])
        for i, column in batch.strings.items():
            assert one.strings[i][0] == column[position]
        by_name = load_features(engine, SPECS, external_ids=[f"u{user}"], as_of_ms=CUTOFF)
        np.testing.assert_array_equal(by_name.numeric[0], batch.numeric[position])
    assert load_features(engine, SPECS, user_ids=[99], as_of_ms=CUTOFF).found.tolist() == [False]
    # What online scoring runs: the reader keeps the SQL, its parameter layout (the scoring
    # instant bound for the event features) and the engine's idle connections.
    by_id, by_external = UserReader(engine, tuple(SPECS), False), UserReader(engine, tuple(SPECS),
                                                                              True)
    for position, user in enumerate(batch.user_ids.tolist()):
        for reader, key in ((by_id, user), (by_external, f"u{user}")):
            row = reader.read(key, CUTOFF)
            assert row[:2] == (user, f"u{user}")
            for i, spec in enumerate(SPECS):
                value = spec.default if row[2 + i] is None else row[2 + i]
                if spec.is_string:
                    assert value == batch.strings[i][position]
                elif value is None:
                    assert np.isnan(batch.numeric[position, i])
                else:
                    assert float(value) == batch.numeric[position, i]
    assert by_id.read(99, CUTOFF) is None and by_external.read("ghost", CUTOFF) is None
    # Without an instant, the reader scores as of now: user 2's purchase a day after the
    # cut-off counts then.
    assert by_id.read(2, CUTOFF)[2 + 6] == 0 and by_id.read(2)[2 + 6] == 1


def test_kept_connections_the_server_dropped_are_replaced(pg_url):
    # Lookup connections are kept outside the pool and never pinged. After the server drops
    # them (a restart, an idle timeout), the next lookups must still answer: the dead ones
    # are closed and the lookup runs again on a new connection.
    from services.scoring.features import _idle, _open_detached

    migrate("profile", pg_url)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(insert(attribute_catalog),
                     [{"name": "income", "value_type": "number", "created_ms": 0}])
        conn.execute(insert(profiles), [{"id": u, "external_id": f"u{u}", "created_ms": 0,
                                         "updated_ms": 0} for u in (1, 2)])
        conn.execute(insert(profile_attributes), [
            {"user_id": u, "name": "income", "num_value": 10.0 * u} for u in (1, 2)])
    read = make_engine(pg_url, read_only=True)
    specs = (FeatureSpec("income", "attribute", "income"),)
    reader = UserReader(read, specs, False)
    try:
        assert reader.read(1, CUTOFF)[2] == 10.0
        kept = _idle(read)
        kept.append(_open_detached(read))  # a second kept connection, as threads leave them
        pids = [c.info.backend_pid for c in kept]
        assert len(set(pids)) == 2
        with engine.connect() as conn:
            for pid in pids:
                assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
        assert reader.read(2, CUTOFF)[2] == 20.0
        assert len(kept) == 1 and kept[0].info.backend_pid not in pids
        # The batch lookup takes the same way back.
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({kept[0].info.backend_pid})")
        batch = load_features(read, list(specs), user_ids=[1, 2], as_of_ms=CUTOFF)
        assert batch.numeric[:, 0].tolist() == [10.0, 20.0]
    finally:
        release_connections(read)
        read.dispose()
        engine.dispose()
