"""Scoring a segment snapshot: members streamed from a real segment service over gRPC."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from marketing.scoring.v1 import scoring_service_pb2 as pb
from marketing.scoring.v1 import scoring_service_pb2_grpc as pb_grpc
from marketing.segment.v1 import segment_service_pb2 as seg_pb
from marketing.segment.v1 import segment_service_pb2_grpc as seg_grpc
from services.common.errors import field_violations
from services.common.testing import channel, running_server, service_settings
from services.scoring.onnx_model import OutputSpec
from tests.scoring import models


@pytest.fixture
def servers(bank_url, tmp_path, redis_url, monkeypatch):
    """A segment server and a scoring server, both over the bank profile store."""
    from services.scoring.servicer import build as build_scoring
    from services.segment.servicer import build as build_segment

    monkeypatch.setenv("MKT_API_KEY", "service-key")
    segment_settings = service_settings("segment", tmp_path, redis_url=redis_url)
    with running_server(segment_settings, build_segment(segment_settings)) as (_, segment_addr):
        monkeypatch.setenv("SEGMENT_ADDR", segment_addr)
        settings = service_settings("scoring", tmp_path)
        definitions = build_scoring(settings, writer=None)
        core = definitions[0].core
        core.register("loan", "conversion", models.logistic_onnx(), models.FEATURES,
                      OutputSpec("probabilities", 1))
        core.registry.promote("loan", 1)
        with running_server(settings, definitions) as (_, address):
            with channel(address, "operator") as ch, channel(segment_addr, "operator") as sch:
                yield pb_grpc.ScoringServiceStub(ch), seg_grpc.SegmentServiceStub(sch), core


def test_score_a_segment_snapshot_streamed_from_the_segment_service(servers):
    stub, segments, core = servers
    segment = segments.CreateSegment(seg_pb.CreateSegmentRequest(segment=seg_pb.Segment(
        display_name="High income", rule_text="income >= 150"))).segment
    snapshot = segments.CreateSnapshot(seg_pb.CreateSnapshotRequest(parent=segment.name)).snapshot
    members = [m.user_id for b in segments.StreamSnapshotMembers(
        seg_pb.StreamSnapshotMembersRequest(name=snapshot.name)) for m in b.members]
    assert snapshot.size == len(members) > 300

    chunks = list(stub.ScoreSnapshot(pb.ScoreSnapshotRequest(
        model="models/loan", chunk_size=100,
        audience=pb.Audience(segment_snapshot=f"{segment.name}/snapshots/latest"))))
    # The members arrive in chunks of the size asked, each naming the snapshot resolved.
    assert [len(c.user_ids) for c in chunks[:-1]] == [100] * (len(chunks) - 1)
    assert {c.segment_snapshot for c in chunks} == {snapshot.name}
    scored = [u for c in chunks for u in c.user_ids]
    assert scored == members and not any(c.missing_user_ids for c in chunks)
    expected = core.score_users("models/loan", user_ids=members)
    np.testing.assert_allclose([s for c in chunks for s in c.scores], expected.scores,
                               rtol=0, atol=1e-7)

    # The same audience by a fixed version; a snapshot that does not exist; a malformed name.
    again = list(stub.ScoreSnapshot(pb.ScoreSnapshotRequest(
        model="models/loan", audience=pb.Audience(segment_snapshot=snapshot.name))))
    assert [u for c in again for u in c.user_ids] == members
    with pytest.raises(grpc.RpcError) as err:
        list(stub.ScoreSnapshot(pb.ScoreSnapshotRequest(
            model="models/loan",
            audience=pb.Audience(segment_snapshot=f"{segment.name}/snapshots/99"))))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    for bad in ("segments/x", "segments/x/snapshots/0", "profiles/1/snapshots/1"):
        with pytest.raises(grpc.RpcError) as err:
            list(stub.ScoreSnapshot(pb.ScoreSnapshotRequest(
                model="models/loan", audience=pb.Audience(segment_snapshot=bad))))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "audience.segment_snapshot" in field_violations(err.value)
