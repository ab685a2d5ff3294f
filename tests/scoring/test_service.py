"""The scoring service over gRPC: real servers on loopback, Universal Bank end to end with score
write-back through a real profile service, readiness, roles and bad input."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from marketing.common.v1 import common_pb2
from marketing.scoring.v1 import scoring_service_pb2 as pb
from marketing.scoring.v1 import scoring_service_pb2_grpc as pb_grpc
from services.common.db import make_engine
from services.common.errors import field_violations
from services.common.profile_tables import scores as scores_table
from services.common.testing import channel, running_server, service_settings
from services.scoring.writeback import ProfileScoreWriter
from tests.scoring import models
from tests.scoring.bank import CSV, FEATURES


def feature(name: str, key: str | None = None) -> pb.FeatureSpec:
    return pb.FeatureSpec(name=name, source=pb.FEATURE_SOURCE_ATTRIBUTE, key=key or name,
                          type=pb.FEATURE_TYPE_NUMBER)


LOAN = pb.Label(attribute=pb.AttributeLabel(name="personal_loan", operator="eq",
                                            value=common_pb2.Value(number_value=1)))


@pytest.fixture
def suite(bank_url, tmp_path, redis_url):
    """A profile server and a scoring server over the bank profile store."""
    from services.profile.servicer import build as build_profile
    from services.scoring.servicer import build as build_scoring

    profile_settings = service_settings("profile", tmp_path, redis_url=redis_url)
    with running_server(profile_settings, build_profile(profile_settings)) as (_, profile_addr):
        writer = ProfileScoreWriter(channel(profile_addr, "service"))
        settings = service_settings("scoring", tmp_path)
        definitions = build_scoring(settings, writer=writer)
        with running_server(settings, definitions) as (server, address):
            with channel(address, "operator") as operator, channel(address, "approver") as approver:
                yield {"stub": pb_grpc.ScoringServiceStub(operator),
                       "approver": pb_grpc.ScoringServiceStub(approver),
                       "address": address, "core": definitions[0].core,
                       "profile_url": bank_url}


def wait_done(stub, name: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = stub.GetOperation(pb.GetOperationRequest(name=name)).operation
        if op.done:
            return op
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish")


def test_bank_end_to_end_over_grpc(suite):
    stub, approver = suite["stub"], suite["approver"]
    started = stub.TrainModel(pb.TrainModelRequest(
        model="models/loan", task=pb.MODEL_TASK_CONVERSION, label=LOAN,
        features=[feature(f) for f in FEATURES], algorithm="logistic_regression")).operation
    assert started.name.startswith("operations/") and not started.done
    op = wait_done(stub, started.name)
    assert op.WhichOneof("result") == "response", op.error
    version = pb.ModelVersion()
    op.response.Unpack(version)
    assert version.name == "models/loan/versions/1"
    assert version.metrics.auc >= 0.94 and version.metrics.top_decile_lift >= 6.5
    assert len(version.metrics.lift) == 10 and version.lineage.algorithm == "logistic_regression"
    progress = pb.TrainingProgress()
    op.metadata.Unpack(progress)
    assert progress.percent == 100 and op.progress_percent == 100

    # Promotion is an approver's call; operators are refused.
    with pytest.raises(grpc.RpcError) as err:
        stub.PromoteModelVersion(pb.PromoteModelVersionRequest(name=version.name))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    promoted = approver.PromoteModelVersion(pb.PromoteModelVersionRequest(name=version.name))
    assert promoted.model_version.aliases == ["production"]

    # Unknown users get their own result; the batch still scores the others.
    scored = stub.ScoreUsers(pb.ScoreUsersRequest(model="models/loan",
                                                  external_ids=["bank-10", "ghost", "bank-11"]))
    assert [s.found for s in scored.scores] == [True, False, True]
    assert scored.scores[1].external_id == "ghost" and scored.scores[1].user_id == 0
    assert 0 < scored.scores[0].score < 1

    # Inline rows packed row-major score the same as the stored profiles.
    df = pd.read_csv(CSV).set_index("ID")
    cols = ["Age", "Experience", "Income", "Family", "CCAvg", "Education", "Mortgage",
            "Securities Account", "CD Account", "Online", "CreditCard"]
    rows = df.loc[[10, 11], cols].to_numpy(float)
    inline = stub.ScoreRows(pb.ScoreRowsRequest(model="models/loan@production", columns=FEATURES,
                                                values=rows.ravel().tolist()))
    assert inline.model_version == "models/loan/versions/1"
    np.testing.assert_allclose(inline.scores, [scored.scores[0].score, scored.scores[2].score],
                               atol=1e-6)

    # A whole snapshot, streamed in chunks.
    chunks = list(stub.ScoreSnapshot(pb.ScoreSnapshotRequest(model="models/loan",
                                                             chunk_size=2000)))
    assert [len(c.user_ids) for c in chunks] == [2000, 2000, 1000]
    audience = pb.Audience(user_ids=pb.UserIds(ids=[10, 11, 999999]))
    part = list(stub.ScoreSnapshot(pb.ScoreSnapshotRequest(model="models/loan",
                                                           audience=audience)))
    assert list(part[0].user_ids) == [10, 11] and list(part[0].missing_user_ids) == [999999]

    # Write-back through the profile service, then the scores are in the profile store.
    written = stub.WriteBackScores(pb.WriteBackScoresRequest(model="models/loan",
                                                             score_name="loan_propensity"))
    assert (written.scored_count, written.written_count) == (5000, 5000)
    engine = make_engine(suite["profile_url"])
    with engine.connect() as conn:
        stored = dict(conn.execute(select(scores_table.c.user_id, scores_table.c.score).where(
            scores_table.c.model_name == "loan_propensity",
            scores_table.c.model_version == "1")).all())
    engine.dispose()
    assert len(stored) == 5000
    assert stored[10] == pytest.approx(scored.scores[0].score, abs=1e-9)

    evaluated = stub.EvaluateModel(pb.EvaluateModelRequest(model="models/loan", label=LOAN))
    assert evaluated.metrics.rows == 5000 and evaluated.metrics.auc > 0.94

    listed = stub.ListModels(pb.ListModelsRequest())
    assert listed.models[0].aliases == {"production": 1}
    ops = stub.ListOperations(pb.ListOperationsRequest()).operations
    assert [o.name for o in ops] == [started.name]


def test_health_turns_serving_after_production_models_load(suite, tmp_path):
    from services.scoring.servicer import build as build_scoring

    core = suite["core"]
    features = [models.FEATURES[0], models.FEATURES[1], models.FEATURES[2]]
    from services.scoring.onnx_model import OutputSpec

    core.register("loan", "conversion", models.logistic_onnx(), features,
                  OutputSpec("probabilities", 1))
    core.registry.promote("loan", 1)
    settings = service_settings("scoring", tmp_path)
    definitions = build_scoring(settings, writer=None)
    fresh = definitions[0].core
    assert fresh.registry._loaded == {}
    with running_server(settings, definitions) as (_, address):
        with grpc.insecure_channel(address) as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(
                service="marketing.scoring.v1.ScoringService")).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert ("loan", 1) in fresh.registry._loaded


def test_bad_input_over_the_wire(suite):
    stub = suite["stub"]
    cases = [
        (lambda: stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
            model="models/loan", task=pb.MODEL_TASK_CONVERSION, onnx_model=b"not a model",
            features=[feature("income"), feature("age"), feature("cc_avg")],
            output=pb.OutputSpec(name="probabilities", column=1))), "onnx_model"),
        (lambda: stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
            model="models/loan", task=pb.MODEL_TASK_CONVERSION,
            onnx_model=models.custom_domain_onnx(),
            features=[feature("income"), feature("age"), feature("cc_avg")],
            output=pb.OutputSpec(name="probabilities", column=1))), "onnx_model"),
        (lambda: stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
            model="models/loan", task=pb.MODEL_TASK_CONVERSION, onnx_model=models.logistic_onnx(),
            features=[feature("income"), feature("age")],
            output=pb.OutputSpec(name="probabilities", column=1))), "feature_schema"),
        (lambda: stub.TrainModel(pb.TrainModelRequest(
            model="models/loan", task=pb.MODEL_TASK_CONVERSION, label=LOAN,
            features=[feature("x", "no_such_attribute")], algorithm="logistic_regression")),
         "features[0].key"),
        (lambda: stub.TrainModel(pb.TrainModelRequest(
            model="models/loan", task=pb.MODEL_TASK_CONVERSION,
            features=[feature("age")], algorithm="logistic_regression")), "label"),
        (lambda: stub.GetModelVersion(pb.GetModelVersionRequest(name="loan-3")), "name"),
        (lambda: stub.ListModels(pb.ListModelsRequest(page_token="%%%")), "page_token"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert field in field_violations(err.value), (field, err.value.details())
    assert stub.ListModels(pb.ListModelsRequest()).models == []
    with pytest.raises(grpc.RpcError) as err:
        stub.ScoreUsers(pb.ScoreUsersRequest(model="models/loan", external_ids=["bank-1"]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # A label with one class fails the operation with INVALID_ARGUMENT, nothing registered.
    op = stub.TrainModel(pb.TrainModelRequest(
        model="models/loan", task=pb.MODEL_TASK_CONVERSION, label=pb.Label(tag="nobody"),
        features=[feature("age")], algorithm="logistic_regression")).operation
    op = wait_done(stub, op.name)
    assert op.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "one class only" in op.error.message
    assert stub.ListModels(pb.ListModelsRequest()).models == []


def test_invalid_timestamps_enums_and_params_name_the_field(suite):
    """Out-of-range Timestamps, unknown enum numbers and non-finite parameters are the
    caller's fault: INVALID_ARGUMENT naming the field, before the model is even looked up."""
    stub = suite["stub"]
    from google.protobuf import timestamp_pb2

    negative_nanos = timestamp_pb2.Timestamp(seconds=1, nanos=-1)
    far_future = timestamp_pb2.Timestamp(seconds=253_402_300_800)
    audience = pb.Audience(user_ids=pb.UserIds(ids=[1]))
    cases = [
        (lambda: stub.ScoreUsers(pb.ScoreUsersRequest(
            model="models/loan", user_ids=[1], as_of_time=negative_nanos)), "as_of_time.nanos"),
        (lambda: list(stub.ScoreSnapshot(pb.ScoreSnapshotRequest(
            model="models/loan", audience=audience, as_of_time=far_future))),
         "as_of_time.seconds"),
        (lambda: stub.WriteBackScores(pb.WriteBackScoresRequest(
            model="models/loan", audience=audience, as_of_time=negative_nanos)),
         "as_of_time.nanos"),
        (lambda: stub.EvaluateModel(pb.EvaluateModelRequest(
            model="models/loan", label=LOAN, cutoff_time=far_future)), "cutoff_time.seconds"),
        (lambda: stub.TrainModel(pb.TrainModelRequest(
            model="models/loan", task=pb.MODEL_TASK_CONVERSION, label=LOAN,
            features=[feature("age")], algorithm="logistic_regression",
            cutoff_time=negative_nanos)), "cutoff_time.nanos"),
        (lambda: stub.TrainModel(pb.TrainModelRequest(
            model="models/loan", task=pb.MODEL_TASK_CONVERSION, label=LOAN,
            features=[pb.FeatureSpec(name="age", source=pb.FEATURE_SOURCE_ATTRIBUTE, key="age",
                                     type=pb.FEATURE_TYPE_NUMBER, aggregate=9)],
            algorithm="logistic_regression")), "features[0].aggregate"),
        (lambda: stub.TrainModel(pb.TrainModelRequest(
            model="models/loan", task=7, label=LOAN, features=[feature("age")],
            algorithm="logistic_regression")), "task"),
        (lambda: stub.TrainModel(pb.TrainModelRequest(
            model="models/loan", task=pb.MODEL_TASK_CONVERSION, label=LOAN,
            features=[feature("age")], algorithm="logistic_regression",
            params={"max_iter": float("inf")})), "params.max_iter"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.value.details())
        assert field in field_violations(err.value), (field, err.value.details())
    assert stub.ListModels(pb.ListModelsRequest()).models == []
