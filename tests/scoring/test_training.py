"""Training: Universal Bank figures beside scikit-learn, ONNX parity, cut-off without leakage,
look-alike, string features, bad labels and windows, cancellation and restarts."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from services.common.db import make_engine
from services.common.errors import InvalidArgument
from services.common.profile_tables import computed_traits, events, profiles
from services.scoring.features import DAY_MS, FeatureSpec
from services.scoring.training import LabelSpec, TrainingRequest, build_dataset
from tests.scoring.bank import CSV, FEATURES

LOAN = LabelSpec(kind="attribute", attribute="personal_loan", operator="eq", number=1.0)
BANK_FEATURES = [FeatureSpec(f, "attribute", f) for f in FEATURES]
CUTOFF = 1_700_000_000_000


def run_training(core, request: TrainingRequest, timeout: float = 120):
    name = core.start_training(request, "tester")
    assert core.runner.wait(name, timeout)
    return core.runner.get(name)


def sklearn_reference(model):
    """scikit-learn run directly on the CSV with the split of the data set's README."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(CSV)
    x = df.drop(columns=["ID", "ZIP Code", "Personal Loan"]).to_numpy(np.float32)
    y = df["Personal Loan"].to_numpy()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.4, stratify=y, random_state=1)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        model.fit(x_tr, y_tr)
    scores = model.predict_proba(x_te)[:, 1]
    order = np.argsort(-scores, kind="stable")
    top = y_te[order][: int(np.ceil(len(y_te) * 0.1))]
    return roc_auc_score(y_te, scores), top.mean() / y_te.mean(), x_te, scores


@pytest.mark.parametrize("algorithm", ["logistic_regression", "gradient_boosting"])
def test_universal_bank_reaches_the_reference_figures(bank_core, algorithm):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    op = run_training(bank_core, TrainingRequest("loan", "conversion", LOAN, BANK_FEATURES,
                                                 algorithm))
    assert op.state == "succeeded", op.error_message
    version = bank_core.registry.get("loan", op.result["version"])
    metrics = version.metrics
    reference = (make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
                 if algorithm == "logistic_regression"
                 else HistGradientBoostingClassifier(random_state=1))
    ref_auc, ref_lift, x_test, ref_scores = sklearn_reference(reference)
    assert metrics["test_rows"] == 2000 and metrics["positives"] == 192
    if algorithm == "logistic_regression":
        assert metrics["auc"] >= 0.94 and metrics["top_decile_lift"] >= 6.5
    else:
        assert metrics["auc"] >= 0.98
    assert abs(metrics["auc"] - ref_auc) < 0.002
    assert abs(metrics["top_decile_lift"] - ref_lift) < 0.3
    assert metrics["onnx_parity_max_abs_diff"] <= 1e-5
    # The same held-out rows scored through the service's ONNX session agree with
    # scikit-learn fitted directly on the same split.
    _, served = bank_core.score_rows(version.resource_name, FEATURES, x_test.ravel())
    assert np.max(np.abs(served - ref_scores)) <= 1e-5
    assert len(metrics["lift_table"]) == 10 and len(metrics["calibration"]) == 10
    assert metrics["lift_table"][-1]["cumulative_gain"] == pytest.approx(1.0)
    assert version.lineage["algorithm"] == algorithm
    assert version.lineage["operation"] == op.name
    assert version.lineage["code_version"]["scikit-learn"]


def test_random_forest_and_promotion(bank_core):
    op = run_training(bank_core, TrainingRequest("loan", "conversion", LOAN, BANK_FEATURES,
                                                 "random_forest", params={"n_estimators": 30},
                                                 promote=True))
    assert op.state == "succeeded", op.error_message
    assert bank_core.registry.get("loan").version == op.result["version"]
    assert bank_core.registry.get("loan").metrics["auc"] > 0.98


def test_hist_gradient_boosting_conversion_trap_is_handled():
    """skl2onnx 1.20 builds HistGradientBoosting leaves with a Python False flag that onnx
    refuses; the fix coerces it and the model then passes the full checker with parity."""
    import onnx
    import onnxruntime as ort
    from sklearn.ensemble import HistGradientBoostingClassifier

    from services.scoring.training import install_tree_flag_fix, to_onnx_bytes

    install_tree_flag_fix()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(scale=0.3, size=400) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("model", model)])
    data = to_onnx_bytes(pipeline, [FeatureSpec(f"f{i}", "attribute", f"f{i}") for i in range(4)])
    converted = onnx.load_from_string(data)
    onnx.checker.check_model(converted, full_check=True)
    tree = next(n for n in converted.graph.node if n.op_type == "TreeEnsembleClassifier")
    flags = next(a for a in tree.attribute if a.name == "nodes_missing_value_tracks_true")
    assert set(flags.ints) <= {0, 1} and 1 in flags.ints  # NaN routing kept, as integers
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    onnx_scores = session.run(["probabilities"], {"features": x})[0][:, 1]
    assert np.max(np.abs(onnx_scores - model.predict_proba(x)[:, 1])) <= 1e-5


def _event_store(url: str, users: int = 400):
    """Profiles with visits before the cut-off; frequent visitors purchase after it."""
    engine = make_engine(url)
    rng = np.random.default_rng(7)
    visits = rng.poisson(3, size=users)
    buyers = rng.random(users) < 1 / (1 + np.exp(-(visits - 3)))
    rows, purchase_rows = [], []
    for u in range(1, users + 1):
        for k in range(int(visits[u - 1])):
            rows.append({"event_id": f"v{u}-{k}", "user_id": u, "event_type": "visit",
                         "ts_ms": CUTOFF - (k + 1) * DAY_MS, "value": None})
        if buyers[u - 1]:
            purchase_rows.append({"event_id": f"p{u}", "user_id": u, "event_type": "purchase",
                                  "ts_ms": CUTOFF + 5 * DAY_MS, "value": 20.0})
    with engine.begin() as conn:
        conn.execute(insert(profiles), [{"id": u, "external_id": f"u{u}",
                                         "created_ms": CUTOFF - 400 * DAY_MS,
                                         "updated_ms": CUTOFF} for u in range(1, users + 1)])
        conn.execute(insert(events), rows + purchase_rows)
    return engine, buyers, visits


EVENT_FEATURES = [
    FeatureSpec("visits_30d", "event", "visit", aggregate="count", window_days=30),
    FeatureSpec("purchases", "event", "purchase", aggregate="count"),
    FeatureSpec("days_since_visit", "event", "visit", aggregate="days_since_last", default=999.0),
]
BOUGHT = LabelSpec(kind="event", event_type="purchase", within_days=30)


def test_event_label_after_the_cutoff_and_no_leakage(empty_profile_url, make_core):
    engine, buyers, visits = _event_store(empty_profile_url)
    before = build_dataset(engine, EVENT_FEATURES, BOUGHT, CUTOFF)
    assert before.y.tolist() == buyers.astype(int).tolist()
    assert before.numeric[:, 0].tolist() == visits.astype(float).tolist()
    # Purchases that are the label (after the cut-off) never count as a feature.
    assert before.numeric[:, 1].sum() == 0
    # Events after the cut-off change nothing in the features.
    with engine.begin() as conn:
        conn.execute(insert(events), [{"event_id": f"late{u}", "user_id": u,
                                       "event_type": "visit", "ts_ms": CUTOFF + DAY_MS}
                                      for u in range(1, 401)])
        conn.execute(insert(profiles), [{"external_id": "newcomer",
                                         "created_ms": CUTOFF + DAY_MS, "updated_ms": CUTOFF}])
    after = build_dataset(engine, EVENT_FEATURES, BOUGHT, CUTOFF)
    np.testing.assert_array_equal(before.numeric, after.numeric)
    assert len(after.y) == 400  # a profile created after the cut-off is not in the population
    core = make_core(empty_profile_url)
    op = run_training(core, TrainingRequest("repurchase", "conversion", BOUGHT, EVENT_FEATURES,
                                            "logistic_regression", cutoff_ms=CUTOFF))
    assert op.state == "succeeded", op.error_message
    version = core.registry.get("repurchase", op.result["version"])
    assert version.metrics["auc"] > 0.7
    assert version.lineage["cutoff_ms"] == CUTOFF
    engine.dispose()


# A purchase log of 1997-1998 (CDNOW-like) loaded today: every profile was created at load
# time, long after the cut-off; only the events date the customers.
CDNOW_CUTOFF = 883_612_800_000  # 1998-01-01T00:00:00Z


def _historical_log(url: str, users: int = 300):
    """Event-only customers whose profiles were created today; frequent 1997 buyers repurchase
    within 90 days after the cut-off. Users 1..20 had their 1997 events pruned and are known
    only by ``first_seen_ms``; the last 15 users first bought after the cut-off."""
    engine = make_engine(url)
    rng = np.random.default_rng(3)
    today = int(__import__("time").time() * 1000)
    purchases = 1 + rng.poisson(1.5, size=users)
    repurchase = rng.random(users) < 1 / (1 + np.exp(-(purchases - 2.5) * 1.5))
    late = np.zeros(users, dtype=bool)
    late[-15:] = True
    pruned = np.zeros(users, dtype=bool)
    pruned[:20] = True
    rows, traits = [], []
    for u in range(1, users + 1):
        i = u - 1
        if late[i]:
            rows.append({"event_id": f"late{u}", "user_id": u, "event_type": "purchase",
                         "ts_ms": CDNOW_CUTOFF + 10 * DAY_MS, "value": 15.0})
            continue
        first = CDNOW_CUTOFF - 300 * DAY_MS
        if not pruned[i]:
            for k in range(int(purchases[i])):
                rows.append({"event_id": f"p{u}-{k}", "user_id": u, "event_type": "purchase",
                             "ts_ms": first + k * 20 * DAY_MS, "value": 12.5})
        traits.append({"user_id": u, "first_seen_ms": first, "updated_ms": today})
        if repurchase[i]:
            rows.append({"event_id": f"r{u}", "user_id": u, "event_type": "purchase",
                         "ts_ms": CDNOW_CUTOFF + 40 * DAY_MS, "value": 30.0})
    with engine.begin() as conn:
        conn.execute(insert(profiles), [{"id": u, "external_id": f"cdnow-{u}", "created_ms": today,
                                         "updated_ms": today} for u in range(1, users + 1)])
        conn.execute(insert(events), rows)
        conn.execute(insert(computed_traits), traits)
    return engine, repurchase & ~late, late


def test_historical_event_only_users_train_a_repurchase_model(empty_profile_url, make_core):
    engine, repurchased, late = _historical_log(empty_profile_url)
    label = LabelSpec(kind="event", event_type="purchase", within_days=90)
    features = [FeatureSpec("purchases", "event", "purchase", aggregate="count"),
                FeatureSpec("spend", "event", "purchase", aggregate="sum"),
                FeatureSpec("days_since_purchase", "event", "purchase",
                            aggregate="days_since_last", default=9999.0)]
    data = build_dataset(engine, features, label, CDNOW_CUTOFF)
    # Everyone active before the cut-off is in, including users known only by first_seen_ms;
    # users whose first purchase came after it are not, though every profile is newer.
    expected = [u for u in range(1, len(late) + 1) if not late[u - 1]]
    assert data.user_ids.tolist() == expected
    assert data.y.tolist() == repurchased[~late].astype(int).tolist()
    # Features see 1997 only: the label purchases (after the cut-off) are never counted.
    assert data.numeric[:20, 0].tolist() == [0.0] * 20
    assert data.numeric[20:, 0].min() >= 1
    assert np.all(data.numeric[20:, 1] == 12.5 * data.numeric[20:, 0])
    core = make_core(empty_profile_url)
    op = run_training(core, TrainingRequest("repurchase", "churn", label, features,
                                            "logistic_regression", cutoff_ms=CDNOW_CUTOFF))
    assert op.state == "succeeded", op.error_message
    version = core.registry.get("repurchase", op.result["version"])
    assert version.lineage["population"] == len(expected)
    assert version.metrics["auc"] > 0.7
    engine.dispose()


def test_empty_window_and_single_class_fail_the_operation(empty_profile_url, make_core):
    engine, _, _ = _event_store(empty_profile_url)
    core = make_core(empty_profile_url)
    late = TrainingRequest("repurchase", "conversion", BOUGHT, EVENT_FEATURES,
                           "logistic_regression", cutoff_ms=CUTOFF + 60 * DAY_MS)
    op = run_training(core, late)
    assert op.state == "failed" and op.error_code == 3
    assert "no 'purchase' events" in op.error_message
    nobody = LabelSpec(kind="tag", tag="vip")
    op = run_training(core, TrainingRequest("repurchase", "conversion", nobody, EVENT_FEATURES,
                                            "logistic_regression", cutoff_ms=CUTOFF))
    assert op.state == "failed" and op.error_code == 3
    assert "one class only" in op.error_message
    assert op.error_violations[0][0] == "label"
    op = run_training(core, TrainingRequest("repurchase", "conversion", nobody, EVENT_FEATURES,
                                            "logistic_regression", cutoff_ms=CUTOFF - 500 * DAY_MS))
    assert op.state == "failed" and "no profile existed" in op.error_message
    assert core.registry.list_models("", 10) == []
    engine.dispose()


def test_lookalike_from_a_seed_segment(bank_core):
    df = pd.read_csv(CSV)
    seeds = [f"bank-{i}" for i in df.loc[df["CD Account"] == 1, "ID"]]
    features = [f for f in BANK_FEATURES if f.key not in ("cd_account",)]
    op = run_training(bank_core, TrainingRequest(
        "cd-lookalike", "lookalike", LabelSpec(kind="ids", external_ids=seeds), features,
        "gradient_boosting", params={"max_iter": 50}))
    assert op.state == "succeeded", op.error_message
    scored = bank_core.score_users(f"models/cd-lookalike/versions/{op.result['version']}",
                                   external_ids=[f"bank-{i}" for i in df["ID"]])
    is_seed = np.isin(np.array(scored.external_ids), seeds)
    scores = np.array(scored.scores)
    assert scores[is_seed].mean() > 3 * scores[~is_seed].mean()


def test_string_features_are_one_hot_encoded(bank_url, make_core):
    engine = make_engine(bank_url)
    stages = np.where(pd.read_csv(CSV)["Income"] > 100, "vip", "standard")
    with engine.begin() as conn:
        conn.execute(insert(computed_traits), [
            {"user_id": i + 1, "lifecycle_stage": str(s), "frequency": 0, "monetary": 0,
             "updated_ms": CUTOFF, "as_of_ms": CUTOFF} for i, s in enumerate(stages)])
    engine.dispose()
    core = make_core(bank_url)
    features = [FeatureSpec("stage", "trait", "lifecycle_stage", "string"),
                *[f for f in BANK_FEATURES if f.key != "income"]]
    op = run_training(core, TrainingRequest("loan", "conversion", LOAN, features,
                                            "logistic_regression"))
    assert op.state == "succeeded", op.error_message
    version = core.registry.get("loan", op.result["version"])
    assert version.metrics["onnx_parity_max_abs_diff"] <= 1e-5
    assert [f.input for f in version.features][:2] == ["stage", "age"]
    numeric = [f.name for f in version.features if f.value_type != "string"]
    _, vip = core.score_rows(version.resource_name, numeric, [40, 15, 2, 2, 2, 0, 0, 1, 0, 0],
                             ["stage"], ["vip"])
    _, std = core.score_rows(version.resource_name, numeric, [40, 15, 2, 2, 2, 0, 0, 1, 0, 0],
                             ["stage"], ["standard"])
    assert vip[0] > std[0]


REQUEST_ERRORS = {
    "unknown feature": (dict(features=[FeatureSpec("x", "attribute", "no_such_attribute")]),
                        "features[0].key"),
    "label as feature": (dict(features=[FeatureSpec("loan", "attribute", "personal_loan")]),
                         "features[0].key"),
    "algorithm": (dict(algorithm="deep_magic"), "algorithm"),
    "params": (dict(params={"n_layers": 3}), "params.n_layers"),
    "empty segment": (dict(label=LabelSpec(kind="ids")), "label.segment.external_ids"),
    "event window": (dict(label=LabelSpec(kind="event", event_type="buy")),
                     "label.event.within_days"),
    "no features": (dict(features=[]), "features"),
}


@pytest.mark.parametrize("case", sorted(REQUEST_ERRORS))
def test_bad_training_requests_are_refused_before_any_work(bank_core, case):
    changes, field = REQUEST_ERRORS[case]
    base = dict(model_name="loan", task="conversion", label=LOAN, features=BANK_FEATURES,
                algorithm="logistic_regression")
    with pytest.raises(InvalidArgument) as err:
        bank_core.start_training(TrainingRequest(**{**base, **changes}))
    assert field in [f for f, _ in err.value.violations]
    assert bank_core.runner.store.list_operations(None, 10) == []


def test_cancel_a_queued_operation_and_restart_shows_operations(bank_core, make_core, bank_url):
    runner = bank_core.runner
    gate = threading.Event()
    blocker = runner.start("train", {"model": "blocker"},
                           lambda progress, cancelled, name: gate.wait(30) and {})
    queued = bank_core.start_training(TrainingRequest("loan", "conversion", LOAN, BANK_FEATURES,
                                                      "logistic_regression"))
    assert runner.cancel(queued).cancel_requested
    gate.set()
    assert runner.wait(queued, 30)
    row = runner.get(queued)
    assert row.state == "cancelled" and row.error_code == 1
    assert bank_core.registry.list_models("", 10) == []
    # A stuck operation survives a restart as a visible failure.
    runner.store.update_operation(blocker, state="running")
    restarted = make_core(bank_url)
    assert restarted.runner.recover() == 1
    row = restarted.runner.get(blocker)
    assert row.state == "failed" and "restarted" in row.error_message
    names = [r.name for r in restarted.runner.store.list_operations(None, 10)]
    assert set(names) == {blocker, queued}
