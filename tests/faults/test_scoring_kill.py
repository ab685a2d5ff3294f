"""SIGKILL the scoring service during a batch score write-back: after a restart and a re-run,
each user has exactly one score row, from the latest model version."""

from __future__ import annotations

import random
import threading
import time

import grpc
import pytest
from sqlalchemy import create_engine, func, select

from marketing.scoring.v1 import scoring_service_pb2 as spb
from marketing.scoring.v1 import scoring_service_pb2_grpc as sgrpc
from services.common.db import make_engine, migrate
from services.common.profile_tables import profiles, scores
from services.common.testing import channel, running_server, service_settings
from services.profile.servicer import build as build_profile
from tests.faults.procs import ServiceProcess
from tests.scoring.bank import load_bank
from tests.scoring.models import logistic_onnx

pytestmark = pytest.mark.slow

MODEL = "models/loan"
FEATURES = [
    spb.FeatureSpec(name=name, source=spb.FEATURE_SOURCE_ATTRIBUTE, key=name,
                    type=spb.FEATURE_TYPE_NUMBER)
    for name in ("income", "age", "cc_avg")
]


def register(stub, seed: int) -> str:
    response = stub.RegisterModelVersion(spb.RegisterModelVersionRequest(
        model=MODEL, task=spb.MODEL_TASK_CONVERSION, onnx_model=logistic_onnx(seed=seed),
        features=FEATURES, output=spb.OutputSpec(name="probabilities", column=1)))
    return response.model_version.name


def score_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(select(scores.c.user_id, scores.c.model_version)
                            .where(scores.c.model_name == "loan")).all()


@pytest.fixture
def suite(tmp_path, redis_url):
    """The profile service (in this process, on the bank customers) and the scoring service
    in its own process, so it can be killed."""
    profile_url = f"sqlite:///{tmp_path / 'profile.db'}"
    migrate("profile", profile_url)
    engine = make_engine(profile_url)
    load_bank(engine)
    settings = service_settings("profile", tmp_path, database_url=profile_url,
                                redis_url=redis_url)
    with running_server(settings, build_profile(settings)) as (_, profile_address):
        scoring = ServiceProcess("scoring", tmp_path / "scoring", PROFILE_ADDR=profile_address,
                                 PROFILE_READ_DATABASE_URL=profile_url, REDIS_URL=redis_url)
        try:
            scoring.start()
            yield scoring, create_engine(profile_url)
        finally:
            scoring.stop()
            engine.dispose()


def test_kill_during_write_back_then_rerun_leaves_one_latest_score_per_user(suite):
    scoring, profile_db = suite
    with profile_db.connect() as conn:
        users = conn.execute(select(func.count()).select_from(profiles)).scalar_one()
    assert users >= 1000
    with channel(scoring.address, "operator") as ch:
        stub = sgrpc.ScoringServiceStub(ch)
        first = register(stub, seed=0)
        assert stub.WriteBackScores(spb.WriteBackScoresRequest(model=first),
                                    timeout=120).written_count == users
        assert {v for _, v in score_rows(profile_db)} == {first.rsplit("/", 1)[1]}
        second = register(stub, seed=1)
        assert second != first

    # Kill at a random instant of the second version's write-back (scoring, or writing).
    delay = random.uniform(0.0, 0.5)
    outcome: dict = {}

    def write_back() -> None:
        with channel(scoring.address, "operator") as ch:
            try:
                outcome["response"] = sgrpc.ScoringServiceStub(ch).WriteBackScores(
                    spb.WriteBackScoresRequest(model=second), timeout=120)
            except grpc.RpcError as exc:
                outcome["error"] = exc

    caller = threading.Thread(target=write_back)
    caller.start()
    time.sleep(delay)
    scoring.kill()
    caller.join(timeout=60)
    assert "error" in outcome or "response" in outcome
    if "error" in outcome:
        assert outcome["error"].code() in {grpc.StatusCode.UNAVAILABLE,
                                           grpc.StatusCode.CANCELLED}, outcome["error"]
    # Whatever the kill interrupted, nothing is doubled: the store keeps one row per user.
    rows = score_rows(profile_db)
    assert len(rows) == len({u for u, _ in rows}) == users

    scoring.start()
    with channel(scoring.address, "operator") as ch:
        rerun = sgrpc.ScoringServiceStub(ch).WriteBackScores(
            spb.WriteBackScoresRequest(model=second), timeout=120)
    assert rerun.written_count == users
    rows = score_rows(profile_db)
    assert len(rows) == users
    assert len({u for u, _ in rows}) == users
    latest = second.rsplit("/", 1)[1]
    assert rerun.model_version == second
    assert {v for _, v in rows} == {latest}, f"killed after {delay:.2f} s"
