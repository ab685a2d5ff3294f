"""Scoring benchmarks: batch engine vs ONNX Runtime, single user vs scikit-learn, batched
scoring RPC vs a packed-bytes RPC, online latency vs a no-op RPC."""

from __future__ import annotations

import itertools
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


def blocks(fn_a, fn_b, calls: int, per_block: int = 25) -> tuple[float, float]:
    """Median seconds per call of ``fn_a`` and ``fn_b``, each timed as a run of back-to-back
    calls (as a server scoring one user after another runs it), the runs alternating so that
    load on a shared machine hits both alike. ``fn_a`` runs ``per_block`` calls a run and
    ``fn_b`` as many as take about as long, so both sides start cold after the other side's
    run equally often per second of work. Timing single calls alternately instead measures
    each right after the other has evicted its caches; runs of equal counts make the faster
    side start cold ten or thirty times as often as the slower one."""
    for _ in range(per_block):
        fn_a(), fn_b()
    started = time.perf_counter()
    for _ in range(per_block):
        fn_a()
    took_a = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(per_block):
        fn_b()
    took_b = time.perf_counter() - started
    per_block_b = max(per_block, round(per_block * took_a / max(took_b, 1e-9)))
    times_a, times_b = [], []
    for _ in range(max(3, calls // per_block)):
        started = time.perf_counter()
        for _ in range(per_block):
            fn_a()
        times_a.append((time.perf_counter() - started) / per_block)
        started = time.perf_counter()
        for _ in range(per_block_b):
            fn_b()
        times_b.append((time.perf_counter() - started) / per_block_b)
    return statistics.median(times_a), statistics.median(times_b)


def packed_definition(sessions: dict) -> ServiceDefinition:
    """The anchor service. ``Score/{key}`` is the minimal scoring RPC: the rows as one packed
    bytes field, straight into the model's ``InferenceSession.run`` (no names, defaults or
    checks), the scores back as packed bytes. ``Score`` carries the same bytes and runs no
    model (transport alone); ``Ping`` does nothing."""

    def bytes_handler(fn):
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=wrappers_pb2.BytesValue.FromString,
            response_serializer=wrappers_pb2.BytesValue.SerializeToString)

    def transport(request, context):
        rows = np.frombuffer(request.value, dtype=np.float64).reshape(-1, WIDTH)
        return wrappers_pb2.BytesValue(value=np.zeros(rows.shape[0]).tobytes())

    def scorer(session):
        def score(request, context):
            rows = np.frombuffer(request.value, dtype=np.float64).reshape(-1, WIDTH)
            out = session.run(["probabilities"], {"features": rows.astype(np.float32)})[0]
            return wrappers_pb2.BytesValue(value=out[:, 1].astype(np.float64).tobytes())
        return score

    def ping(request, context):
        return empty_pb2.Empty()

    methods = {"Score": bytes_handler(transport),
               "Ping": grpc.unary_unary_rpc_method_handler(
                   ping, request_deserializer=empty_pb2.Empty.FromString,
                   response_serializer=empty_pb2.Empty.SerializeToString)}
    for key, session in sessions.items():
        methods[f"Score{key.title()}"] = bytes_handler(scorer(session))
    handler = grpc.method_handlers_generic_handler(BENCH_SERVICE, methods)
    return ServiceDefinition(
        name="bench", register=lambda _s, server: server.add_generic_rpc_handlers((handler,)),
        servicer=None, full_name=BENCH_SERVICE,
        roles={name: auth.READERS for name in methods})


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
    """One result; ``goal`` None marks a figure shown for context, with no goal of its own."""
    ratio = figure / anchor
    return {"name": name, "figure": figure, "anchor": anchor, "unit": unit, "ratio": ratio,
            "goal": goal, "higher_is_better": higher, "notes": notes}


def run(size: str) -> list[dict]:
    from marketing.scoring.v1 import scoring_service_pb2 as pb
    from marketing.scoring.v1 import scoring_service_pb2_grpc as pb_grpc
    from services.scoring.servicer import build
    from services.scoring.training import train

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
        # Trained as the service trains (same code, same store); the fitted scikit-learn
        # pipeline is kept, so that both sides of the single-row rows run the same model.
        refs, pipelines = {}, {}
        for key, algorithm, params in (
                ("gbm", "gradient_boosting", {"max_iter": 100, "max_leaf_nodes": 31}),
                ("lr", "logistic_regression", {})):
            out = train(core.profile_engine, TrainingRequest(key, "conversion", label, features,
                                                             algorithm, params=params),
                        lambda _percent, _stage: None, lambda: False)
            version = core.registry.register(key, "conversion", out["onnx_bytes"],
                                             out["features"], out["output"],
                                             metrics=out["metrics"], lineage=out["lineage"])
            core.registry.promote(key, version.version)
            refs[key] = f"models/{key}"
            pipelines[key] = out["pipeline"]

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
                               BATCH / from_db, BATCH / anchor, "rows/s", None, True,
                               "context, no goal: the 10,000 users' features read by one SQL "
                               "statement over the SQLite profile store (20 attribute joins), "
                               "then scored, vs InferenceSession.run alone on rows in memory; "
                               "the database read dominates"))

        # One user after another, in a shuffled order, on both sides: the anchor scores that
        # user's row (float32, as the pipeline was fitted), the engine the same values given
        # inline, or the user read from the store.
        order = np.random.default_rng(5).permutation(cfg["users"])
        rows32 = x.astype(np.float32)
        for key, label_text in (("gbm", "GBM 100 trees"), ("lr", "logistic regression")):
            model = pipelines[key]
            turn = itertools.count()
            anchor_turn = itertools.count()

            def sk_one():
                i = order[next(anchor_turn) % len(order)]
                return model.predict_proba(rows32[i:i + 1])

            def row_one():
                return core.score_rows(refs[key], NAMES, x[order[next(turn) % len(order)]])

            def user_one():
                return core.score_users(refs[key],
                                        user_ids=[int(order[next(turn) % len(order)]) + 1])

            sk, rows_one = blocks(sk_one, row_one, cfg["single"])
            sk_again, users = blocks(sk_one, user_one, cfg["single"])
            results.append(row(f"scoring: single row in-process, {label_text}",
                               1 / rows_one, 1 / sk, "scores/s", 10.0, True,
                               "ScoreRows engine on one inline row vs predict_proba of the "
                               "same fitted scikit-learn pipeline (imputer"
                               + (", scaler" if key == "lr" else "") + ", model) on one row"))
            results.append(row(f"scoring: single user in-process from store, {label_text}",
                               1 / users, 1 / sk_again, "scores/s", 10.0, True,
                               "ScoreUsers engine (one SQL read of the user's 20 attributes "
                               "+ inference) vs predict_proba of the same fitted pipeline on "
                               "one row in memory"))

        definitions.append(packed_definition(
            {key: core.registry.loaded(key).session for key in refs}))
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
                transport = throughput(lambda: packed.future(raw), cfg["rpc_calls"])
                for key, label_text in (("gbm", "GBM 100 trees"), ("lr", "logistic regression")):
                    request.model = refs[key]
                    minimal = ch.unary_unary(
                        f"/{BENCH_SERVICE}/Score{key.title()}",
                        request_serializer=wrappers_pb2.BytesValue.SerializeToString,
                        response_deserializer=wrappers_pb2.BytesValue.FromString)
                    ours, anchor = [], []
                    for _ in range(2):  # alternated, so that load on the machine hits both
                        ours.append(throughput(lambda: stub.ScoreRows.future(request),
                                               cfg["rpc_calls"] // 2))
                        anchor.append(throughput(lambda: minimal.future(raw),
                                                 cfg["rpc_calls"] // 2))
                    ours_rate, anchor_rate = statistics.mean(ours), statistics.mean(anchor)
                    results.append(row(f"scoring: ScoreRows RPC, {label_text}, 1k rows x16",
                                       ours_rate, anchor_rate, "rows/s", 0.5, True,
                                       "ScoreRows (packed repeated double, row-major, column "
                                       "names, defaults, checks) vs the minimal scoring RPC of "
                                       "the same server: one packed bytes field straight into "
                                       "InferenceSession.run of the same model"))
                    results.append(row(f"scoring: ScoreRows RPC vs transport alone, "
                                       f"{label_text}", ours_rate, transport, "rows/s", None,
                                       True, "context, no goal: the same ScoreRows figure vs a "
                                       "packed-bytes RPC that runs no model; with the model's "
                                       "own cost in the figure only, this shows what inference "
                                       "costs on 2 CPUs"))
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
