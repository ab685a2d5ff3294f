"""Component tests: the segment service on a real gRPC server (port 0) with real Redis."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
import redis
from google.protobuf import field_mask_pb2, timestamp_pb2
from sqlalchemy import create_engine

from marketing.segment.v1 import segment_service_pb2 as pb
from marketing.segment.v1 import segment_service_pb2_grpc as pb_grpc
from services.common import profile_tables as pt
from services.common.errors import field_violations, rich_details
from services.common.testing import channel, running_server, service_settings
from services.segment.realtime import EVENTS_STREAM, MEMBERSHIP_STREAM
from services.segment.servicer import build
from tests.segment.conftest import DAY, NOW, Population

AS_OF = timestamp_pb2.Timestamp()
AS_OF.FromMilliseconds(NOW)


@pytest.fixture
def service(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("SEGMENT_SCHEDULER_INTERVAL_SECONDS", "0.2")
    settings = service_settings("segment", tmp_path, redis_url=redis_url)
    profile_engine = create_engine(settings.profile_read_database_url)
    pt.metadata.create_all(profile_engine)
    pop = Population()
    for i in range(1, 41):
        uid = pop.user(f"user-{i}", age=20 + i, gender="f" if i % 2 else "m")
        if i <= 10:
            pop.event(uid, "view_page", NOW - 2 * DAY, topic="anti-ageing")
        if i % 4 == 0:
            pop.tag(uid, "vip")
    pop.write(profile_engine)
    client = redis.Redis.from_url(redis_url)
    with running_server(settings, build(settings, client)) as (_, address):
        with channel(address, "operator") as ch:
            yield pb_grpc.SegmentServiceStub(ch), address, profile_engine, pop, client
    client.close()
    profile_engine.dispose()


RULE = 'age >= 30 and count(view_page where topic = "anti-ageing", 30d) == 0'


def test_segment_lifecycle_over_grpc(service):
    stub, address, _, pop, _ = service
    created = stub.CreateSegment(pb.CreateSegmentRequest(segment=pb.Segment(
        display_name="No anti-ageing", rule_text=RULE))).segment
    assert created.name.startswith("segments/") and created.rule_text == RULE
    assert created.rule.all_of.conditions[1].event_aggregate.window.last.amount == 30
    assert created.creator == "olivia"
    got = stub.GetSegment(pb.GetSegmentRequest(name=created.name)).segment
    assert got == created
    # The tree form creates the same segment.
    twin = stub.CreateSegment(pb.CreateSegmentRequest(segment=pb.Segment(
        display_name="Twin", rule=created.rule))).segment
    assert twin.rule_text == RULE
    listed = stub.ListSegments(pb.ListSegmentsRequest(page_size=1))
    assert [s.name for s in listed.segments] == [created.name] and listed.next_page_token
    estimate = stub.EstimateSegment(pb.EstimateSegmentRequest(rule_text=RULE, as_of_time=AS_OF))
    # Ages 30..60 are users 10..40; user 10 viewed the page.
    assert (estimate.count, estimate.population) == (30, 40)
    preview = stub.PreviewSegment(pb.PreviewSegmentRequest(segment=created.name, page_size=2,
                                                           as_of_time=AS_OF))
    assert [m.external_id for m in preview.members] == ["user-11", "user-12"]
    first = stub.CreateSnapshot(pb.CreateSnapshotRequest(parent=created.name,
                                                         as_of_time=AS_OF)).snapshot
    assert (first.version, first.size, first.name) == (1, 30, f"{created.name}/snapshots/1")
    updated = stub.UpdateSegment(pb.UpdateSegmentRequest(
        segment=pb.Segment(name=created.name, rule_text=RULE.replace("30 and", "50 and"),
                           revision=created.revision),
        update_mask=field_mask_pb2.FieldMask(paths=["rule_text"]))).segment
    assert updated.revision == created.revision + 1
    second = stub.CreateSnapshot(pb.CreateSnapshotRequest(parent=created.name,
                                                          as_of_time=AS_OF)).snapshot
    assert second.size == 11
    batches = list(stub.StreamSnapshotMembers(pb.StreamSnapshotMembersRequest(
        name=f"{created.name}/snapshots/1", batch_size=8)))
    assert [len(b.members) for b in batches] == [8, 8, 8, 6]
    assert [m.external_id for b in batches for m in b.members] == [
        f"user-{i}" for i in range(11, 41)]
    check = stub.CheckMembership(pb.CheckMembershipRequest(segment=created.name,
                                                           external_id="user-20"))
    assert (check.member, check.snapshot) == (False, second.name)
    assert stub.CheckMembership(pb.CheckMembershipRequest(
        segment=created.name, external_id="user-20", version=1)).member
    diff = stub.CompareSnapshots(pb.CompareSnapshotsRequest(segment=created.name,
                                                            from_version=1, max_members=3))
    assert (diff.entered_count, diff.left_count, diff.stayed_count) == (0, 19, 11)
    assert [m.external_id for m in diff.left] == ["user-11", "user-12", "user-13"]
    snaps = stub.ListSnapshots(pb.ListSnapshotsRequest(parent=created.name))
    assert [s.version for s in snaps.snapshots] == [2, 1]
    latest = stub.GetSnapshot(pb.GetSnapshotRequest(name=f"{created.name}/snapshots/latest"))
    assert latest.snapshot == second
    stub.DeleteSegment(pb.DeleteSegmentRequest(name=created.name))
    with pytest.raises(grpc.RpcError) as gone:
        stub.GetSegment(pb.GetSegmentRequest(name=created.name))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_rule_rpcs(service):
    stub = service[0]
    parsed = stub.ParseRule(pb.ParseRuleRequest(rule_text=RULE))
    assert stub.FormatRule(pb.FormatRuleRequest(rule=parsed.rule)).rule_text == RULE
    ok = stub.ValidateRule(pb.ValidateRuleRequest(rule_text=RULE))
    assert ok.valid and ok.rule_text == RULE
    bad = stub.ValidateRule(pb.ValidateRuleRequest(rule_text="age >= 30 and\n  height > 2"))
    assert not bad.valid
    (violation,) = bad.violations
    assert violation.field == "rule_text.all_of.conditions[1].attribute.field"
    assert (violation.line, violation.column) == (2, 3)
    syntax = stub.ValidateRule(pb.ValidateRuleRequest(rule_text="age >="))
    assert (syntax.valid, syntax.violations[0].line, syntax.violations[0].column) == (
        False, 1, 7)


def test_bad_input_names_the_field(service):
    stub = service[0]
    cases = [
        (pb.CreateSegmentRequest(segment=pb.Segment(display_name="x", rule_text="age >= ")),
         "segment.rule_text"),
        (pb.CreateSegmentRequest(segment=pb.Segment(display_name="x", rule_text='age = "x"')),
         "segment.rule.attribute.values[0]"),
        (pb.CreateSegmentRequest(segment=pb.Segment(display_name="x", rule=pb.Condition(
            event_aggregate=pb.EventAggregateCondition(
                aggregate=pb.AGGREGATE_COUNT, event=pb.EventSelector(event_type="a"),
                op=pb.OPERATOR_GT, values=[1],
                window=pb.TimeWindow(last=pb.RelativeDuration(amount=0,
                                                              unit=pb.TIME_UNIT_DAYS)))))),
         "segment.rule.event_aggregate.window"),
        (pb.CreateSegmentRequest(segment=pb.Segment(display_name="x", rule=pb.Condition(
            consent=pb.ConsentCondition()))), "segment.rule.consent.channel"),
        (pb.CreateSegmentRequest(segment=pb.Segment(display_name="", rule_text="age > 1")),
         "segment.display_name"),
        (pb.GetSegmentRequest(name="segment/1"), "name"),
        (pb.GetSnapshotRequest(name="segments/1/snapshot/1"), "name"),
        (pb.CompareSnapshotsRequest(segment="segments/1"), "from_version"),
        (pb.GetInsightRequest(rule_text="age > 1", fields=["nope"]), "fields[0]"),
    ]
    for request, field in cases:
        method = getattr(stub, type(request).__name__[:-len("Request")])
        with pytest.raises(grpc.RpcError) as caught:
            method(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in field_violations(caught.value), (field, caught.value.details())
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateSegment(pb.CreateSegmentRequest(segment=pb.Segment(
            display_name="x", rule_text="age > 1 and\n count(a, -3d) > 1")))
    assert "line 2, column 2" in caught.value.details()
    assert rich_details(caught.value)


def test_roles_and_referenced_segments(service):
    stub, address, *_ = service
    base = stub.CreateSegment(pb.CreateSegmentRequest(segment=pb.Segment(
        display_name="Base", rule_text="age > 50"))).segment
    stub.CreateSegment(pb.CreateSegmentRequest(segment=pb.Segment(
        display_name="Uses base", rule=pb.Condition(segment=pb.SegmentCondition(
            segment=base.name)))))
    with pytest.raises(grpc.RpcError) as caught:
        stub.DeleteSegment(pb.DeleteSegmentRequest(name=base.name))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with channel(address, "approver") as ch:
        approver = pb_grpc.SegmentServiceStub(ch)
        assert approver.GetSegment(pb.GetSegmentRequest(name=base.name)).segment.name
        with pytest.raises(grpc.RpcError) as denied:
            approver.CreateSnapshot(pb.CreateSnapshotRequest(parent=base.name))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with channel(address, None) as ch:
        with pytest.raises(grpc.RpcError) as anonymous:
            pb_grpc.SegmentServiceStub(ch).GetSegment(pb.GetSegmentRequest(name=base.name))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_insight_over_grpc(service):
    stub = service[0]
    insight = stub.GetInsight(pb.GetInsightRequest(
        rule_text='has_tag("vip")', fields=["gender", "age"],
        bucket_bounds=[pb.BucketBounds(field="age", bounds=[40])], as_of_time=AS_OF))
    assert (insight.segment_size, insight.population_size) == (10, 40)
    by = {d.dimension: {b.value: b for b in d.buckets} for d in insight.distributions}
    # Every fourth user is tagged: all have even numbers, so all are "m".
    assert by["attribute:gender"]["m"].segment_share == 1.0
    assert by["attribute:gender"]["m"].tgi == pytest.approx(200.0)
    assert by["attribute:age"]["< 40"].segment_count == 4
    assert by["tags"]["vip"].tgi == pytest.approx(400.0)


def test_realtime_segment_publishes_entered(service):
    stub, _, profile_engine, pop, client = service
    segment = stub.CreateSegment(pb.CreateSegmentRequest(segment=pb.Segment(
        display_name="Buyers", rule_text="count(purchase) >= 1", realtime=True,
        refresh=pb.RefreshSchedule(every_minutes=1)))).segment
    assert segment.next_refresh_time.seconds > 0
    uid = pop.ids["user-7"]
    with profile_engine.begin() as connection:
        connection.execute(pt.events.insert(), [dict(
            event_id="live-1", user_id=uid, event_type="purchase",
            ts_ms=int(time.time() * 1000) - 1000, value=5.0, properties=None)])
    client.xadd(EVENTS_STREAM, {"event_id": "live-1", "user_id": uid, "external_id": "user-7",
                                "event_type": "purchase", "ts_ms": 0, "properties": "{}"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not client.xlen(MEMBERSHIP_STREAM):
        time.sleep(0.05)
    ((_, fields),) = client.xrange(MEMBERSHIP_STREAM)
    assert fields[b"external_id"] == b"user-7" and fields[b"change"] == b"entered"
    assert fields[b"segment"] == segment.name.encode()
    # The current membership of a real-time segment is the live set, before any snapshot.
    deadline = time.monotonic() + 10
    check = stub.CheckMembership(pb.CheckMembershipRequest(segment=segment.name,
                                                           external_id="user-7"))
    while not check.member and time.monotonic() < deadline:
        time.sleep(0.05)
        check = stub.CheckMembership(pb.CheckMembershipRequest(segment=segment.name,
                                                               external_id="user-7"))
    assert (check.member, check.live, check.snapshot, check.user_id) == (True, True, "", uid)
    other = stub.CheckMembership(pb.CheckMembershipRequest(segment=segment.name,
                                                           external_id="user-8"))
    assert (other.member, other.live) == (False, True)
    unknown = stub.CheckMembership(pb.CheckMembershipRequest(segment=segment.name,
                                                             external_id="nobody"))
    assert (unknown.member, unknown.live, unknown.user_id) == (False, True, 0)
    # A named version still answers from that snapshot.
    snapshot = stub.CreateSnapshot(pb.CreateSnapshotRequest(parent=segment.name)).snapshot
    pinned = stub.CheckMembership(pb.CheckMembershipRequest(
        segment=segment.name, external_id="user-7", version=snapshot.version))
    assert (pinned.member, pinned.live, pinned.snapshot) == (True, False, snapshot.name)


@pytest.mark.parametrize("seconds, started", [("0", False), ("300", True)])
def test_reconcile_setting_zero_starts_no_reconcile(tmp_path, redis_url, monkeypatch,
                                                    seconds, started):
    monkeypatch.setenv("SEGMENT_REALTIME_RECONCILE_SECONDS", seconds)
    settings = service_settings("segment", tmp_path, redis_url=redis_url)
    profile_engine = create_engine(settings.profile_read_database_url)
    pt.metadata.create_all(profile_engine)
    client = redis.Redis.from_url(redis_url)
    (definition,) = build(settings, client)
    before = set(threading.enumerate())
    definition.start()
    try:
        names = {t.name for t in set(threading.enumerate()) - before}
        assert "segment-realtime" in names
        assert ("segment-reconcile" in names) is started
    finally:
        definition.stop()
        client.close()
        profile_engine.dispose()
