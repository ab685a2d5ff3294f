"""Scoring benchmarks: batch engine vs ONNX Runtime, single user vs scikit-learn, batched
scoring RPC vs a packed-bytes RPC, online latency vs a no-op RPC."""

from __future__ import annotations

import logging
import pathlib
import statistics
import tempfile
import time

import grpc
import numpy as np
from google.protobuf import empty_pb2, wrappers_pb2
from sqlalchemy import insert

from services.common import auth
from services.common.db import make_engine, migrate
from services.common.profile_tables import attribute_catalog, profile_attributes, profiles
from services.common.server import ServiceDefinition, create_server
from services.common.testing import channel, service_settings
from services.scoring.features import FeatureSpec
from services.scoring.training import LabelSpec, TrainingRequest

BENCH_SERVICE = "marketing.bench.v1.PackedService"
SIZES = {
    "quick": {"users": 10_000, "batches": 15, "single": 300, "rpc_calls": 160, "latency": 400},
    "full": {"users": 20_000, "batches": 20, "single": 2_000, "rpc_calls": 800, "latency": 3_000},
}
WIDTH = 20
BATCH = 10_000
RPC_ROWS = 1_000
IN_FLIGHT = 16
NAMES = [f"x{i:02d}" for i in range(WIDTH)]


def seed_profiles(url: str, users: int) -> np.ndarray:
    """Profiles with 20 numeric attributes and a label attribute drawn from a logistic model."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(users, WIDTH))
    logit = x[:, :5] @ np.array([1.5, -1.0, 0.8, 0.5, -0.7]) + 0.6 * x[:, 5] * x[:, 6] - 2.0
    y = (rng.random(users) < 1 / (1 + np.exp(-logit))).astype(float)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(attribute_catalog), [
            {"name": n, "value_type": "number", "created_ms": 0} for n in [*NAMES, "label"]])
        conn.execute(insert(profiles), [{"id": u + 1, "external_id": f"u{u + 1}",
                                         "created_ms": 0, "updated_ms": 0} for u in range(users)])
        rows = [{"user_id": u + 1, "name": n, "num_value": float(x[u, j])}
                for u in range(users) for j, n in enumerate(NAMES)]
        rows += [{"user_id": u + 1, "name": "label", "num_value": y[u]} for u in range(users)]
        for start in range(0, len(rows), 50_000):
            conn.execute(insert(profile_attributes), rows[start:start + 50_000])
    engine.dispose()
    return x


def best_of(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def paired(fn_a, fn_b, repeat: int) -> tuple[float, float]:
    """Median seconds of ``fn_a`` and ``fn_b`` run alternately, so that load on a shared
    machine hits both alike."""
    fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        fn_a()
        times_a.append(time.perf_counter() - started)
        started = time.perf_counter()
        fn_b()
        times_b.append(time.perf_counter() - started)
    return statistics.median(times_a), statistics.median(times_b)


def packed_definition() -> ServiceDefinition:
    """The anchor service: Score carries the rows as one packed bytes field and answers one
    packed bytes field of the same size as the scores (no model runs); Ping does nothing."""

    def score(request, context):
        rows = np.frombuffer(request.value, dtype=np.float64).reshape(-1, WIDTH)
        return wrappers_pb2.BytesValue(value=np.zeros(rows.shape[0]).tobytes())

    def ping(request, context):
        return empty_pb2.Empty()

    handler = grpc.method_handlers_generic_handler(BENCH_SERVICE, {
        "Score": grpc.unary_unary_rpc_method_handler(
            score, request_deserializer=wrappers_pb2.BytesValue.FromString,
            response_serializer=wrappers_pb2.BytesValue.SerializeToString),
        "Ping": grpc.unary_unary_rpc_method_handler(
            ping, request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString),
    })
    return ServiceDefinition(
        name="bench", register=lambda _s, server: server.add_generic_rpc_handlers((handler,)),
        servicer=None, full_name=BENCH_SERVICE,
        roles={"Score": auth.READERS, "Ping": auth.READERS})


def throughput(send, calls: int) -> float:
    """Rows per second with IN_FLIGHT calls outstanding."""
    pending = [send() for _ in range(IN_FLIGHT)]
    for f in pending:
        f.result()
    started = time.perf_counter()
    pending, done = [], 0
    issued = 0
    while issued < calls or pending:
        while issued < calls and len(pending) < IN_FLIGHT:
            pending.append(send())
            issued += 1
        pending.pop(0).result()
        done += 1
    return done * RPC_ROWS / (time.perf_counter() - started)


def latencies(call, count: int) -> tuple[float, float]:
    for _ in range(50):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def row(name, figure, anchor, unit, goal, higher, notes) -> dict:
    ratio = figure / anchor
    return {"name": name, "figure": figure, "anchor": anchor, "unit": unit, "ratio": ratio,
            "goal": goal, "higher_is_better": higher, "notes": notes}


def run(size: str) -> list[dict]:
    from marketing.scoring.v1 import scoring_service_pb2 as pb
    from marketing.scoring.v1 import scoring_service_pb2_grpc as pb_grpc
    from services.scoring.servicer import build

    logging.getLogger("marketing").setLevel(logging.WARNING)
    cfg = SIZES[size]
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        profile_url = f"sqlite:///{tmp_path / 'profile.db'}"
        migrate("profile", profile_url)
        x = seed_profiles(profile_url, cfg["users"])
        settings = service_settings("scoring", tmp_path, log_level="WARNING")
        definitions = build(settings, writer=None)
        core = definitions[0].core
        features = [FeatureSpec(n, "attribute", n) for n in NAMES]
        label = LabelSpec(kind="attribute", attribute="label", operator="eq", number=1.0)
        refs = {}
        for key, algorithm, params in (
                ("gbm", "gradient_boosting", {"max_iter": 100, "max_leaf_nodes": 31}),
                ("lr", "logistic_regression", {})):
            name = core.start_training(TrainingRequest(key, "conversion", label, features,
                                                       algorithm, params=params))
            core.runner.wait(name, 600)
            op = core.runner.get(name)
            if op.state != "succeeded":
                raise RuntimeError(f"training {key} failed: {op.error_message}")
            core.registry.promote(key, op.result["version"])
            refs[key] = f"models/{key}"

        batch = x[:BATCH]
        flat = batch.ravel()
        for key, label_text in (("gbm", "GBM 100 trees"), ("lr", "logistic regression")):
            loaded = core.registry.loaded(key)
            x32 = batch.astype(np.float32)
            anchor, engine = paired(
                lambda: loaded.session.run(["probabilities"], {"features": x32}),
                lambda: core.score_rows(refs[key], NAMES, flat), cfg["batches"])
            results.append(row(f"scoring: batch engine, {label_text}, 10k rows",
                               BATCH / engine, BATCH / anchor, "rows/s", 0.8, True,
                               "ScoreRows engine (column mapping, defaults, float32 cast, "
                               "inference, score column) vs InferenceSession.run on the same "
                               "float32 batch"))
            ids = np.arange(1, BATCH + 1)
            from_db = best_of(lambda: list(core.score_snapshot(refs[key], ids.tolist(),
                                                               chunk_size=BATCH)),
                              max(2, cfg["batches"] // 4))
            results.append(row(f"scoring: batch from profile store, {label_text}, 10k rows",
                               BATCH / from_db, BATCH / anchor, "rows/s", 0.8, True,
                               "features assembled by one SQL statement over the SQLite "
                               "profile store (20 attribute joins) then scored, vs "
                               "InferenceSession.run alone; the database read dominates"))

        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        y = (x[:, 0] > 0).astype(int)
        for key, label_text, model in (
                ("gbm", "GBM 100 trees", HistGradientBoostingClassifier(max_iter=100,
                                                                        early_stopping=False)),
                ("lr", "logistic regression", make_pipeline(StandardScaler(),
                                                            LogisticRegression()))):
            model.fit(x[:5000].astype(np.float32), y[:5000])
            one = x[:1].astype(np.float32)
            sk, rows_one = paired(lambda: model.predict_proba(one),
                                  lambda: core.score_rows(refs[key], NAMES, x[0]), cfg["single"])
            users = best_of(lambda: core.score_users(refs[key], user_ids=[7]), cfg["single"])
            results.append(row(f"scoring: single row in-process, {label_text}",
                               1 / rows_one, 1 / sk, "scores/s", 10.0, True,
                               "ScoreRows engine on one inline row vs scikit-learn "
                               "predict_proba on one row"))
            results.append(row(f"scoring: single user in-process from store, {label_text}",
                               1 / users, 1 / sk, "scores/s", 10.0, True,
                               "ScoreUsers engine (one SQL read of 20 attributes + inference) "
                               "vs scikit-learn predict_proba on one row"))

        definitions.append(packed_definition())
        server, port = create_server(settings, definitions, address="127.0.0.1:0")
        server.start()
        try:
            address = f"127.0.0.1:{port}"
            with channel(address, "operator") as ch:
                stub = pb_grpc.ScoringServiceStub(ch)
                packed = ch.unary_unary(f"/{BENCH_SERVICE}/Score",
                                        request_serializer=wrappers_pb2.BytesValue.SerializeToString,
                                        response_deserializer=wrappers_pb2.BytesValue.FromString)
                ping = ch.unary_unary(f"/{BENCH_SERVICE}/Ping",
                                      request_serializer=empty_pb2.Empty.SerializeToString,
                                      response_deserializer=empty_pb2.Empty.FromString)
                rows = x[:RPC_ROWS]
                request = pb.ScoreRowsRequest(model="models/gbm", columns=NAMES,
                                              values=rows.ravel().tolist())
                raw = wrappers_pb2.BytesValue(value=rows.tobytes())
                for key, label_text in (("gbm", "GBM 100 trees"), ("lr", "logistic regression")):
                    request.model = refs[key]
                    ours = throughput(lambda: stub.ScoreRows.future(request), cfg["rpc_calls"])
                    anchor = throughput(lambda: packed.future(raw), cfg["rpc_calls"])
                    results.append(row(f"scoring: ScoreRows RPC, {label_text}, 1k rows x16",
                                       ours, anchor, "rows/s", 0.5, True,
                                       "ScoreRows (packed repeated double, row-major) vs a "
                                       "packed-bytes RPC that runs no model, same server"))
                for key, label_text in (("gbm", "GBM 100 trees"), ("lr", "logistic regression")):
                    one = pb.ScoreUsersRequest(model=refs[key], user_ids=[7])
                    p50, p99 = latencies(lambda: stub.ScoreUsers(one), cfg["latency"])
                    n50, n99 = latencies(lambda: ping(empty_pb2.Empty()), cfg["latency"])
                    results.append(row(f"scoring: ScoreUsers p50 latency, {label_text}",
                                       p50, n50, "us", 2.0, False,
                                       f"one user from the store; p99 {p99:.0f} us vs no-op "
                                       f"p50 {n50:.0f} / p99 {n99:.0f} us, same server"))
        finally:
            server.stop(0)
            definitions[0].stop()
    return results
