"""Training inside the platform: labels and features as of a cut-off, a scikit-learn pipeline,
conversion to ONNX with a parity check, evaluation and registration."""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import case, exists, func, or_, select
from sqlalchemy.engine import Engine

from services.common.errors import InvalidArgument
from services.common.profile_tables import (
    computed_traits,
    events,
    profile_attributes,
    profile_tags,
    profiles,
)
from services.scoring.evaluation import evaluate_scores
from services.scoring.features import (
    DAY_MS,
    FeatureSpec,
    apply_defaults,
    check_known,
    feature_select,
    now_ms,
    validate_specs,
)
from services.scoring.onnx_model import OutputSpec

PARITY_TOLERANCE = 1e-5
ALGORITHMS = ("logistic_regression", "gradient_boosting", "random_forest")
LABEL_KINDS = ("ids", "attribute", "tag", "event")
OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le")

# Hyper-parameters a request may set, with the type each must have.
ALLOWED_PARAMS: dict[str, dict[str, type]] = {
    "logistic_regression": {"C": float, "max_iter": int},
    "gradient_boosting": {"max_iter": int, "learning_rate": float, "max_depth": int,
                          "max_leaf_nodes": int, "min_samples_leaf": int, "l2_regularization": float},
    "random_forest": {"n_estimators": int, "max_depth": int, "min_samples_leaf": int},
}


@dataclasses.dataclass
class LabelSpec:
    """Who counts as positive. ``ids``: the listed external ids (a segment snapshot, or the
    seed of a look-alike); ``attribute``: a profile attribute compared with a value;
    ``tag``: holders of a tag; ``event``: users with an event of ``event_type`` within
    ``within_days`` after the cut-off."""

    kind: str
    external_ids: list[str] = dataclasses.field(default_factory=list)
    attribute: str = ""
    operator: str = "eq"
    number: float | None = None
    string: str | None = None
    tag: str = ""
    event_type: str = ""
    within_days: int = 0

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if len(self.external_ids) > 50:
            out["external_ids"] = self.external_ids[:50]
            out["external_ids_count"] = len(self.external_ids)
        return out


@dataclasses.dataclass
class TrainingRequest:
    """Everything a training run needs; checked by ``validate`` before any work starts."""

    model_name: str
    task: str
    label: LabelSpec
    features: list[FeatureSpec]
    algorithm: str
    cutoff_ms: int | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    test_fraction: float = 0.4
    random_state: int = 1
    description: str = ""
    promote: bool = False


def validate_request(request: TrainingRequest) -> None:
    problems: list[tuple[str, str]] = []
    if request.algorithm not in ALGORITHMS:
        problems.append(("algorithm", f"must be one of {', '.join(ALGORITHMS)}"))
    else:
        allowed = ALLOWED_PARAMS[request.algorithm]
        for key, value in request.params.items():
            if key not in allowed:
                problems.append((f"params.{key}", f"not a parameter of {request.algorithm} "
                                 f"(allowed: {', '.join(sorted(allowed))})"))
            elif not math.isfinite(float(value)):
                problems.append((f"params.{key}", "must be a finite number"))
            elif allowed[key] is int and float(value) != int(value):
                problems.append((f"params.{key}", "must be an integer"))
            elif float(value) <= 0:
                problems.append((f"params.{key}", "must be positive"))
    if not 0.05 <= request.test_fraction <= 0.5:
        problems.append(("test_fraction", "must be between 0.05 and 0.5"))
    label = request.label
    if label.kind not in LABEL_KINDS:
        problems.append(("label", f"one of {', '.join(LABEL_KINDS)} is required"))
    elif label.kind == "ids" and not label.external_ids:
        problems.append(("label.segment.external_ids", "the positive segment is empty"))
    elif label.kind == "attribute":
        if not label.attribute:
            problems.append(("label.attribute.name", "is required"))
        if label.operator not in OPERATORS:
            problems.append(("label.attribute.operator", f"must be one of {', '.join(OPERATORS)}"))
        if (label.number is None) == (label.string is None):
            problems.append(("label.attribute.value", "exactly one of number or string is required"))
    elif label.kind == "tag" and not label.tag:
        problems.append(("label.tag", "is required"))
    elif label.kind == "event":
        if not label.event_type:
            problems.append(("label.event.event_type", "is required"))
        if label.within_days <= 0:
            problems.append(("label.event.within_days", "must be positive"))
    for i, spec in enumerate(request.features):
        if label.kind == "attribute" and spec.source == "attribute" and spec.key == label.attribute:
            problems.append((f"features[{i}].key", f"attribute {spec.key!r} is the label itself"))
    if problems:
        raise InvalidArgument(violations=problems)
    validate_specs(request.features, "features")


def _label_expression(label: LabelSpec, cutoff_ms: int):
    """A 0/1 SQL expression per profile row (None for an id list, matched in numpy)."""
    if label.kind == "attribute":
        column = (profile_attributes.c.num_value if label.number is not None
                  else profile_attributes.c.str_value)
        value = label.number if label.number is not None else label.string
        compare = {"eq": column == value, "ne": column != value, "gt": column > value,
                   "ge": column >= value, "lt": column < value, "le": column <= value}
        condition = exists().where(profile_attributes.c.user_id == profiles.c.id,
                                   profile_attributes.c.name == label.attribute,
                                   compare[label.operator])
    elif label.kind == "tag":
        condition = exists().where(profile_tags.c.user_id == profiles.c.id,
                                   profile_tags.c.tag == label.tag,
                                   or_(profile_tags.c.expires_ms.is_(None),
                                       profile_tags.c.expires_ms > cutoff_ms))
    elif label.kind == "event":
        condition = exists().where(events.c.user_id == profiles.c.id,
                                   events.c.event_type == label.event_type,
                                   events.c.ts_ms >= cutoff_ms,
                                   events.c.ts_ms < cutoff_ms + label.within_days * DAY_MS)
    else:
        return None
    # A CASE rather than a cast: PostgreSQL has no cast from boolean to a floating type.
    return case((condition, 1.0), else_=0.0)


@dataclasses.dataclass
class Dataset:
    """Features and labels of the population at the cut-off."""

    numeric: np.ndarray
    strings: dict[int, np.ndarray]
    y: np.ndarray
    user_ids: np.ndarray
    external_ids: list[str]


def _check_window(engine: Engine, label: LabelSpec, cutoff_ms: int) -> None:
    if label.kind != "event":
        return
    end = cutoff_ms + label.within_days * DAY_MS
    stmt = select(func.count()).select_from(events).where(
        events.c.event_type == label.event_type, events.c.ts_ms >= cutoff_ms, events.c.ts_ms < end)
    with engine.connect() as conn:
        count = conn.execute(stmt).scalar()
    if not count:
        raise InvalidArgument("label.event", f"the label window [{cutoff_ms}, {end}) ms holds no "
                              f"{label.event_type!r} events; the training window has no data")


def population_at(cutoff_ms: int):
    """Who existed at the cut-off: profiles created by then, or known from earlier activity.
    Historical logs loaded today create their profiles with today's time, so a profile's
    creation alone would leave an old purchase log without a population; the first event
    (kept in ``first_seen_ms`` even after old events are pruned) dates the user instead."""
    # Aliases keep the subqueries apart from the same tables joined for features.
    seen = computed_traits.alias("seen")
    earlier = events.alias("earlier")
    return or_(
        profiles.c.created_ms <= cutoff_ms,
        exists().where(seen.c.user_id == profiles.c.id, seen.c.first_seen_ms < cutoff_ms),
        exists().where(earlier.c.user_id == profiles.c.id, earlier.c.ts_ms < cutoff_ms),
    )


def build_dataset(engine: Engine, features: Sequence[FeatureSpec], label: LabelSpec,
                  cutoff_ms: int) -> Dataset:
    """One SQL statement: each profile that existed at the cut-off, its features computed from
    what was known before the cut-off, and its label."""
    _check_window(engine, label, cutoff_ms)
    stmt = feature_select(features, cutoff_ms).where(population_at(cutoff_ms))
    label_expr = _label_expression(label, cutoff_ms)
    if label_expr is not None:
        stmt = stmt.add_columns(label_expr.label("label"))
    stmt = stmt.order_by(profiles.c.id)
    with engine.connect() as conn:
        rows = conn.execute(stmt, {"as_of_ms": cutoff_ms}).all()
    if not rows:
        raise InvalidArgument("cutoff_time", "no profile existed at the cut-off (none created "
                              "and none with an event before it); the training window has "
                              "no data")
    width = len(features)
    string_idx = [i for i, s in enumerate(features) if s.is_string]
    raw = np.array([r[2:2 + width] for r in rows], dtype=object).reshape(len(rows), width)
    strings = {i: raw[:, i].copy() for i in string_idx}
    if string_idx:
        raw[:, string_idx] = None
    numeric = raw.astype(np.float64)
    apply_defaults(features, numeric, strings)
    user_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    external_ids = [r[1] for r in rows]
    if label_expr is not None:
        y = np.fromiter((r[-1] for r in rows), dtype=np.float64, count=len(rows)).astype(int)
    else:
        y = np.isin(np.array(external_ids, dtype=object), np.array(label.external_ids,
                                                                   dtype=object)).astype(int)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise InvalidArgument("label", f"the label has one class only ({positives} positives "
                              f"among {len(y)} profiles); both classes are needed")
    return Dataset(numeric, strings, y, user_ids, external_ids)


# The skl2onnx converter for HistGradientBoosting trees (1.20) passes a Python ``False`` as
# the missing-value flag of leaf nodes; current onnx refuses booleans in an integer-list
# attribute ("Expected an int, got a boolean"). The flag is coerced to an int before the node
# is built, which is what the ONNX attribute means.
@functools.cache
def install_tree_flag_fix() -> bool:
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node
    if getattr(original, "_coerces_bool_flags", False):
        return True

    @functools.wraps(original)
    def add_node(*args, **kwargs):
        flag = kwargs.get("nodes_missing_value_tracks_true")
        if isinstance(flag, (bool, np.bool_)):
            kwargs["nodes_missing_value_tracks_true"] = int(flag)
        return original(*args, **kwargs)

    add_node._coerces_bool_flags = True
    tree_ensemble.add_node = add_node
    return True


def _floor_to_float32(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each threshold, as float64."""
    snapped = thresholds.astype(np.float32)
    above = snapped.astype(np.float64) > thresholds
    snapped[above] = np.nextafter(snapped[above], np.float32(-np.inf))
    return snapped.astype(np.float64)


def snap_thresholds_to_float32(model) -> None:
    """Rounds a fitted tree model's split thresholds down to float32, in place.

    scikit-learn keeps thresholds in float64 (midpoints between two float32 values); the ONNX
    tree operators hold float32, and skl2onnx rounds each threshold to the nearest one. When
    it rounds up, a float32 input equal to the rounded value goes left in ONNX and right in
    scikit-learn (seen on purchase sums: 40.97 against a midpoint of 40.96 and 40.98). For a
    float32 input x, ``x <= t`` holds exactly when ``x <= floor32(t)``, so rounding down
    changes no decision of scikit-learn on float32 inputs (which is all the model ever sees:
    training and serving both cast to float32) and makes the ONNX model decide the same.
    """
    for predictors in getattr(model, "_predictors", ()):  # HistGradientBoosting
        for predictor in predictors:
            predictor.nodes["num_threshold"] = _floor_to_float32(predictor.nodes["num_threshold"])
    trees = getattr(model, "estimators_", None)
    if trees is None and hasattr(model, "tree_"):
        trees = [model]
    for tree in trees if trees is not None else ():
        for estimator in np.ravel(tree) if isinstance(tree, np.ndarray) else [tree]:
            if hasattr(estimator, "tree_"):
                leaf = estimator.tree_.children_left == -1
                threshold = estimator.tree_.threshold
                threshold[~leaf] = _floor_to_float32(threshold[~leaf])


def make_pipeline(features: Sequence[FeatureSpec], algorithm: str, params: dict,
                  random_state: int):
    """The scikit-learn pipeline: imputation, one-hot encoding of strings, scaling for the
    linear model, then the classifier."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    typed = {k: ALLOWED_PARAMS[algorithm][k](v) for k, v in params.items()}
    if algorithm == "logistic_regression":
        classifier = LogisticRegression(**{"max_iter": 1000, **typed})
    elif algorithm == "gradient_boosting":
        classifier = HistGradientBoostingClassifier(**{"random_state": random_state, **typed})
    else:
        classifier = RandomForestClassifier(**{"n_estimators": 100, "random_state": random_state,
                                               "n_jobs": 1, **typed})
    numeric_steps = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if algorithm == "logistic_regression":
        numeric_steps.append(("scale", StandardScaler()))
    if not any(f.is_string for f in features):
        return Pipeline([*numeric_steps, ("model", classifier)])
    numeric_names = [f.name for f in features if not f.is_string]
    string_names = [f.name for f in features if f.is_string]
    transformers = []
    if numeric_names:
        transformers.append(("numeric", Pipeline(numeric_steps), numeric_names))
    # Missing strings are already "" (or the feature's default) when features are assembled,
    # so the encoder sees them as one more category; unseen categories encode to all zeros.
    transformers.append(("strings", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                         string_names))
    return Pipeline([("columns", ColumnTransformer(transformers)), ("model", classifier)])


def model_inputs(features: Sequence[FeatureSpec], numeric: np.ndarray,
                 strings: dict[int, np.ndarray]):
    """The training matrix as the pipeline sees it (float32 values, the precision the ONNX
    model computes in) and the ONNX input layout of the feature specs."""
    values = numeric.astype(np.float32)
    if not strings:
        return values, [dataclasses.replace(f, input="features") for f in features]
    import pandas as pd

    columns = {}
    for i, spec in enumerate(features):
        columns[spec.name] = strings[i].astype(str) if spec.is_string else values[:, i]
    return pd.DataFrame(columns), [dataclasses.replace(f, input=f.name) for f in features]


def to_onnx_bytes(pipeline, features: Sequence[FeatureSpec]) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    install_tree_flag_fix()
    if any(f.is_string for f in features):
        initial = [(f.name, StringTensorType([None, 1]) if f.is_string
                    else FloatTensorType([None, 1])) for f in features]
    else:
        initial = [("features", FloatTensorType([None, len(features)]))]
    onx = convert_sklearn(pipeline, initial_types=initial,
                          options={id(pipeline.steps[-1][1]): {"zipmap": False}},
                          target_opset={"": 17, "ai.onnx.ml": 3})
    return onx.SerializeToString()


def onnx_feeds(features: Sequence[FeatureSpec], frame) -> dict[str, np.ndarray]:
    if isinstance(frame, np.ndarray):
        return {"features": frame}
    return {f.name: frame[f.name].to_numpy().reshape(-1, 1) for f in features}


def code_version() -> dict[str, str]:
    out = {}
    for package in ("marketing-suite", "scikit-learn", "skl2onnx", "onnx", "onnxruntime"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


class Cancelled(Exception):
    """The operation was cancelled between two stages."""


Progress = Callable[[int, str], None]


def train(engine: Engine, request: TrainingRequest, progress: Progress,
          cancelled: Callable[[], bool], threads: int = 1) -> dict[str, Any]:
    """Runs the whole training; returns the ONNX bytes, schema, output, metrics and lineage,
    and the fitted scikit-learn pipeline (kept in memory only, for comparisons). Raises
    InvalidArgument for a request the data cannot support."""
    from threadpoolctl import threadpool_limits

    # OpenMP pools sized to every core fight the server's own threads (and each other) on a
    # busy machine; a fixed, small pool keeps training time predictable.
    with threadpool_limits(limits=max(1, threads)):
        return _train(engine, request, progress, cancelled)


def _train(engine: Engine, request: TrainingRequest, progress: Progress,
           cancelled: Callable[[], bool]) -> dict[str, Any]:
    import onnxruntime as ort
    from sklearn.model_selection import train_test_split

    def stage(percent: int, name: str) -> None:
        if cancelled():
            raise Cancelled()
        progress(percent, name)

    cutoff = request.cutoff_ms if request.cutoff_ms is not None else now_ms()
    stage(5, "checking features")
    check_known(engine, request.features, "features")
    stage(10, "building features")
    data = build_dataset(engine, request.features, request.label, cutoff)
    if min(int(data.y.sum()), int(len(data.y) - data.y.sum())) < 4:
        raise InvalidArgument("label", "each class needs at least 4 profiles to split and "
                              f"evaluate ({int(data.y.sum())} positives among {len(data.y)})")
    frame, specs = model_inputs(request.features, data.numeric, data.strings)
    index = np.arange(len(data.y))
    train_idx, test_idx = train_test_split(index, test_size=request.test_fraction,
                                           stratify=data.y, random_state=request.random_state)
    take = (lambda idx: frame[idx]) if isinstance(frame, np.ndarray) else (
        lambda idx: frame.iloc[idx].reset_index(drop=True))
    x_train, x_test = take(train_idx), take(test_idx)
    y_train, y_test = data.y[train_idx], data.y[test_idx]
    stage(30, "fitting")
    pipeline = make_pipeline(request.features, request.algorithm, request.params,
                             request.random_state)
    pipeline.fit(x_train, y_train)
    snap_thresholds_to_float32(pipeline.steps[-1][1])
    stage(60, "converting to ONNX")
    onnx_bytes = to_onnx_bytes(pipeline, specs)
    stage(70, "checking ONNX parity")
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_scores = session.run(["probabilities"], onnx_feeds(specs, x_test))[0][:, 1]
    sklearn_scores = pipeline.predict_proba(x_test)[:, 1]
    parity = float(np.max(np.abs(onnx_scores.astype(np.float64) - sklearn_scores)))
    if parity > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX and scikit-learn disagree by {parity:.3g} on held-out rows")
    stage(80, "evaluating")
    metrics = evaluate_scores(y_test, onnx_scores.astype(np.float64))
    metrics["onnx_parity_max_abs_diff"] = parity
    metrics["train_rows"] = len(train_idx)
    metrics["test_rows"] = len(test_idx)
    lineage = {
        "cutoff_ms": cutoff,
        "label": request.label.to_dict(),
        "population": len(data.y),
        "features": [f.to_dict() for f in specs],
        "algorithm": request.algorithm,
        "params": {**pipeline.steps[-1][1].get_params(), **request.params},
        "test_fraction": request.test_fraction,
        "random_state": request.random_state,
        "code_version": code_version(),
    }
    lineage["params"] = {k: v for k, v in lineage["params"].items()
                         if isinstance(v, (int, float, str, bool)) or v is None}
    stage(90, "registering")
    return {"onnx_bytes": onnx_bytes, "features": specs,
            "output": OutputSpec("probabilities", 1), "metrics": metrics, "lineage": lineage,
            "pipeline": pipeline}
