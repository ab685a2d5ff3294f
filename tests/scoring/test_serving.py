"""Serving: vectorised feature assembly (one SQL statement per batch), defaults, unknown users,
inline rows, snapshots."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import event

from services.common.errors import InvalidArgument
from services.scoring.features import FeatureSpec, release_connections
from services.scoring.onnx_model import OutputSpec
from tests.scoring import models

OUT = OutputSpec("probabilities", 1)


@pytest.fixture
def served(bank_core):
    bank_core.register("loan", "conversion", models.logistic_onnx(), models.FEATURES, OUT)
    bank_core.registry.promote("loan", 1)
    return bank_core


def count_statements(engine):
    """SELECTs the SQLite driver runs (batch lookups go straight to the driver's cursor, so
    they are counted there rather than by SQLAlchemy's execution events)."""
    seen = []

    def trace(statement: str) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append(statement)

    release_connections(engine)
    engine.dispose()
    event.listen(engine, "connect",
                 lambda dbapi_conn, record: dbapi_conn.set_trace_callback(trace))
    return seen


def test_one_statement_per_batch_and_unknown_users(served):
    statements = count_statements(served.profile_engine)
    asked = [f"bank-{i}" for i in range(1, 801)] + ["ghost-1", "ghost-2"]
    result = served.score_users("models/loan", external_ids=asked)
    assert len(statements) == 1
    assert sum(result.found) == 800 and not any(result.found[-2:])
    assert np.isnan(result.scores[-2:]).all() and np.isfinite(result.scores[:800]).all()
    assert result.user_ids[-2:] == [0, 0]
    assert result.external_ids[-1] == "ghost-2"
    statements.clear()
    chunks = list(served.score_snapshot("models/loan", chunk_size=1500))
    assert [len(c.scores) for c in chunks] == [1500, 1500, 1500, 500]
    assert len(statements) == 4
    by_id = dict(zip(np.concatenate([c.user_ids for c in chunks]).tolist(),
                     np.concatenate([c.scores for c in chunks]).tolist()))
    assert by_id[5] == pytest.approx(result.scores[4])


def test_inline_rows_use_defaults_for_missing_features(served):
    # cc_avg has default 0.0: leaving it out equals sending 0.
    _, partial = served.score_rows("models/loan", ["income", "age"], [100.0, 30.0, 20.0, 60.0])
    _, full = served.score_rows("models/loan", ["income", "age", "cc_avg"],
                                [100.0, 30.0, 0.0, 20.0, 60.0, 0.0])
    np.testing.assert_allclose(partial, full)
    _, reordered = served.score_rows("models/loan", ["cc_avg", "age", "income"],
                                     [0.0, 30.0, 100.0, 0.0, 60.0, 20.0])
    np.testing.assert_allclose(reordered, full)
    with pytest.raises(InvalidArgument) as err:
        served.score_rows("models/loan", ["income", "shoe_size"], [1.0, 2.0])
    assert err.value.violations[0][0] == "columns[1]"
    with pytest.raises(InvalidArgument) as err:
        served.score_rows("models/loan", ["income", "age"], [1.0, 2.0, 3.0])
    assert err.value.violations[0][0] == "values"


def test_full_schema_rows_fill_defaults_without_touching_the_callers_array(served):
    # Rows of every feature in schema order go straight to the model; a NaN still takes the
    # feature's default (cc_avg: 0.0) and the caller's array is left as it was.
    names = [s.name for s in models.FEATURES]
    assert names == ["income", "age", "cc_avg"]
    given = np.array([100.0, 30.0, np.nan, 20.0, 60.0, 0.0])
    before = given.copy()
    _, direct = served.score_rows("models/loan", names, given)
    np.testing.assert_array_equal(np.isnan(given), np.isnan(before))
    _, general = served.score_rows("models/loan", ["income", "age"], [100.0, 30.0, 20.0, 60.0])
    np.testing.assert_allclose(direct, general, rtol=1e-6)
    # A refused set of columns is refused on every call, not remembered as good.
    for _ in range(2):
        with pytest.raises(InvalidArgument) as err:
            served.score_rows("models/loan", [*names[:-1], "shoe_size"], [1.0] * len(names))
        assert err.value.violations[0][0] == f"columns[{len(names) - 1}]"


def test_kept_lookup_connections_see_later_writes(served, bank_url):
    # Lookups reuse open driver connections; each must still read the store as it is now.
    from sqlalchemy import select, update

    from services.common.db import make_engine
    from services.common.profile_tables import profile_attributes

    before = served.score_users("models/loan", user_ids=[1]).scores[0]
    engine = make_engine(bank_url)
    with engine.begin() as conn:
        conn.execute(update(profile_attributes)
                     .where(profile_attributes.c.user_id == 1,
                            profile_attributes.c.name.in_(["income", "age"]))
                     .values(num_value=-1.0))
        cc_avg = conn.execute(select(profile_attributes.c.num_value).where(
            profile_attributes.c.user_id == 1, profile_attributes.c.name == "cc_avg")).scalar()
    engine.dispose()
    after = served.score_users("models/loan", user_ids=[1]).scores[0]
    _, expected = served.score_rows("models/loan", ["income", "age", "cc_avg"],
                                    [-1.0, -1.0, cc_avg])
    assert after != before
    assert after == pytest.approx(expected[0])


def test_event_features_are_bounded_by_the_scoring_instant(served, bank_url):
    from sqlalchemy import insert

    from services.common.db import make_engine
    from services.common.profile_tables import events
    from services.scoring.features import DAY_MS, load_features

    engine = make_engine(bank_url)
    with engine.begin() as conn:
        conn.execute(insert(events), [
            {"event_id": f"e{k}", "user_id": 1, "event_type": "visit", "ts_ms": k * DAY_MS,
             "value": 2.0} for k in range(1, 11)])
    specs = [FeatureSpec("n", "event", "visit", aggregate="count"),
             FeatureSpec("n3", "event", "visit", aggregate="count", window_days=3),
             FeatureSpec("sum", "event", "visit", aggregate="sum"),
             FeatureSpec("ago", "event", "visit", aggregate="days_since_last", default=-1.0)]
    batch = load_features(engine, specs, user_ids=[1, 2], as_of_ms=6 * DAY_MS)
    assert batch.numeric[0].tolist() == [5.0, 3.0, 10.0, 1.0]
    assert batch.numeric[1].tolist() == [0.0, 0.0, 0.0, -1.0]
    engine.dispose()


def test_one_user_path_agrees_with_the_batch_path(served, bank_url):
    # One user takes its own statement (a primary-key subquery per attribute) and goes
    # straight into the model; it must score exactly as the batch lookup does, with defaults
    # for missing attributes and a per-user "not found" for unknown ids.
    from sqlalchemy import delete

    from services.common.db import make_engine
    from services.common.profile_tables import profile_attributes

    engine = make_engine(bank_url)
    with engine.begin() as conn:
        # User 3 loses cc_avg, which then takes its default (0.0).
        conn.execute(delete(profile_attributes).where(
            profile_attributes.c.user_id == 3, profile_attributes.c.name == "cc_avg"))
    engine.dispose()
    ids = [1, 2, 3, 4]
    batch = served.score_users("models/loan", user_ids=[*ids, 999_999])
    for position, user in enumerate(ids):
        one = served.score_users("models/loan", user_ids=[user])
        assert one.found == [True]
        assert one.user_ids == [user]
        assert one.external_ids == [batch.external_ids[position]]
        assert one.scores[0] == batch.scores[position]
        by_name = served.score_users("models/loan", external_ids=[batch.external_ids[position]])
        assert by_name.scores[0] == batch.scores[position]
        assert by_name.user_ids == [user]
    assert np.isfinite(batch.scores[:4]).all()
    income, age = _attribute(bank_url, 3, "income"), _attribute(bank_url, 3, "age")
    _, defaulted = served.score_rows("models/loan", ["income", "age"], [income, age])
    assert batch.scores[2] == pytest.approx(defaulted[0])
    missing = served.score_users("models/loan", user_ids=[999_999])
    assert missing.found == [False] and np.isnan(missing.scores[0])
    assert missing.user_ids == [999_999] and missing.external_ids == [""]
    ghost = served.score_users("models/loan", external_ids=["ghost-9"])
    assert ghost.found == [False] and ghost.external_ids == ["ghost-9"]
    assert ghost.user_ids == [0]


def _attribute(url: str, user: int, name: str) -> float:
    from sqlalchemy import select

    from services.common.db import make_engine
    from services.common.profile_tables import profile_attributes

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(profile_attributes.c.num_value).where(
                profile_attributes.c.user_id == user,
                profile_attributes.c.name == name)).scalar_one()
    finally:
        engine.dispose()


def test_one_user_calls_on_many_threads_each_get_their_own_user(served):
    # Each thread keeps its own input row bound to the session: calls running at once on
    # several threads must never see another thread's values.
    import concurrent.futures

    # Fitted on the bank's scales (income, age, card spending), so that scores spread out.
    served.register("spread", "conversion",
                    models.logistic_onnx(loc=[70.0, 45.0, 2.0], scale=[45.0, 11.0, 1.7]),
                    models.FEATURES, OUT)
    served.registry.promote("spread", 1)
    ids = list(range(1, 401))
    batch = served.score_users("models/spread", user_ids=ids)
    expected = dict(zip(ids, batch.scores))
    assert len(set(batch.scores)) > 300  # the users really score differently

    def one(user: int) -> tuple[int, float]:
        return user, served.score_users("models/spread", user_ids=[user]).scores[0]

    alone = dict(one(user) for user in ids)
    # One row and four hundred take different kernels inside ONNX Runtime: the last float32
    # bit may differ, never more.
    assert all(abs(alone[user] - expected[user]) <= 2e-7 for user in ids)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, ids * 3))
    assert all(score == alone[user] for user, score in got)
    # A missing value (None or NaN) takes its feature's default in the bound row too, and the
    # default does not stick to the next call.
    loaded = served.registry.loaded("spread")
    _, left_out = served.score_rows("models/spread", ["income", "age"], [100.0, 30.0])
    _, given = served.score_rows("models/spread", ["income", "age", "cc_avg"],
                                 [100.0, 30.0, 5.0])
    assert loaded.score_row([100.0, 30.0, None]) == pytest.approx(left_out[0], abs=1e-7)
    assert loaded.score_row((100.0, 30.0, float("nan"))) == loaded.score_row([100.0, 30.0, None])
    assert loaded.score_row([100.0, 30.0, 5.0]) == pytest.approx(given[0], abs=1e-7)
    assert left_out[0] != given[0]
