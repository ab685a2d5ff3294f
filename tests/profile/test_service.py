"""Component tests: a real profile server on loopback port 0, SQLite or PostgreSQL, real Redis."""

from __future__ import annotations

import contextlib
import time

import grpc
import pytest
import redis
from google.protobuf import field_mask_pb2, timestamp_pb2

from marketing.common.v1 import common_pb2
from marketing.profile.v1 import profile_service_pb2 as pb
from marketing.profile.v1 import profile_service_pb2_grpc as pb_grpc
from services.common.errors import field_violations
from services.common.testing import channel, running_server, service_settings
from services.profile.config import ProfileConfig
from services.profile.core import EVENTS_STREAM
from services.profile.servicer import build


def ts(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def now_ms() -> int:
    return int(time.time() * 1000)


def event(event_id, user, at_ms, value=None, event_type="purchase", **props):
    message = pb.Event(event_id=event_id, user_id=user, event_type=event_type, timestamp=ts(at_ms))
    if value is not None:
        message.value = value
    for key, v in props.items():
        message.properties[key].CopyFrom(v)
    return message


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The server's database: SQLite always, PostgreSQL (a fresh schema) when reachable."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'profile.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def start(tmp_path, redis_url, database_url):
    """Starts a profile server with config overrides; returns stubs per role."""
    stack = contextlib.ExitStack()

    def run(**overrides):
        settings = service_settings(
            "profile", tmp_path, redis_url=redis_url, database_url=database_url
        )
        config = ProfileConfig(maintenance_interval_s=0, full_recompute_interval_s=0).replace(**overrides)
        _server, address = stack.enter_context(running_server(settings, build(settings, config)))

        def stub(role="operator"):
            opened = stack.enter_context(channel(address, role))
            client = pb_grpc.ProfileServiceStub(opened)
            client.channel = opened  # for calls that bypass the generated serializers
            return client

        return stub

    yield run
    stack.close()


def test_profile_crud_over_grpc(start):
    stub = start()()
    stub.CreateAttribute(pb.CreateAttributeRequest(attribute=pb.Attribute(
        name="attributes/age", value_type=common_pb2.VALUE_TYPE_NUMBER, description="years")))
    created = stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(
        external_id="u1", attributes={"age": common_pb2.Value(number_value=30)},
        tags=[pb.Tag(tag="vip")], quiet_hours=pb.QuietHours(start_minute=1320, end_minute=480),
    ))).profile
    assert created.name == "profiles/u1" and created.user_id > 0
    assert created.quiet_hours.start_minute == 1320
    got = stub.GetProfile(pb.GetProfileRequest(name="profiles/u1")).profile
    assert got.attributes["age"].number_value == 30 and [t.tag for t in got.tags] == ["vip"]
    updated = stub.UpdateProfile(pb.UpdateProfileRequest(
        profile=pb.Profile(name="profiles/u1", time_zone="Asia/Shanghai"),
        update_mask=field_mask_pb2.FieldMask(paths=["time_zone"]))).profile
    assert updated.time_zone == "Asia/Shanghai" and updated.attributes["age"].number_value == 30
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="u2")))
    batch = stub.BatchGetProfiles(pb.BatchGetProfilesRequest(names=["profiles/u2", "profiles/u1"]))
    assert [p.external_id for p in batch.profiles] == ["u2", "u1"]
    page = stub.ListProfiles(pb.ListProfilesRequest(page_size=1))
    assert len(page.profiles) == 1 and page.next_page_token
    rest = stub.ListProfiles(pb.ListProfilesRequest(page_size=1, page_token=page.next_page_token))
    assert rest.profiles[0].external_id == "u2" and not rest.next_page_token
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="u1")))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    stub.DeleteProfile(pb.DeleteProfileRequest(name="profiles/u2"))
    with pytest.raises(grpc.RpcError) as err:
        stub.GetProfile(pb.GetProfileRequest(name="profiles/u2"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_get_profile_message_is_the_batch_message(start):
    """GetProfile and BatchGetProfiles answer the same Profile message for a user (every
    attribute kind, tags with and without expiry, quiet hours), also when named by an alias."""
    stub = start()()
    kinds = {"age": common_pb2.VALUE_TYPE_NUMBER, "city": common_pb2.VALUE_TYPE_STRING,
             "vip": common_pb2.VALUE_TYPE_BOOL, "seen": common_pb2.VALUE_TYPE_TIMESTAMP,
             "brands": common_pb2.VALUE_TYPE_STRING_LIST}
    for name, kind in kinds.items():
        stub.CreateAttribute(pb.CreateAttributeRequest(
            attribute=pb.Attribute(name=f"attributes/{name}", value_type=kind)))
    later = now_ms() + 3_600_000
    attributes = {
        "age": common_pb2.Value(number_value=41.5),
        "city": common_pb2.Value(string_value="Lyon"),
        "vip": common_pb2.Value(bool_value=False),
        "seen": common_pb2.Value(timestamp_value=ts(1_700_000_000_123)),
        "brands": common_pb2.Value(string_list_value=common_pb2.StringList(values=["x", "y"])),
    }
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(
        external_id="m1", attributes=attributes, time_zone="Europe/Paris",
        tags=[pb.Tag(tag="vip"), pb.Tag(tag="trial", expire_time=ts(later))],
        quiet_hours=pb.QuietHours(start_minute=0, end_minute=420), app_uninstalled=True)))
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="m2")))
    stub.MergeIdentity(pb.MergeIdentityRequest(name="profiles/m1", anonymous_id="cookie-1"))
    for name in ("profiles/m1", "profiles/m2", "profiles/cookie-1"):
        single = stub.GetProfile(pb.GetProfileRequest(name=name)).profile
        batch = stub.BatchGetProfiles(pb.BatchGetProfilesRequest(names=[name])).profiles
        assert [single] == list(batch), name
    got = stub.GetProfile(pb.GetProfileRequest(name="profiles/cookie-1")).profile
    assert got.name == "profiles/m1" and dict(got.attributes) == attributes
    assert [(t.tag, t.HasField("expire_time")) for t in got.tags] == [("trial", True), ("vip", False)]
    assert got.tags[0].expire_time == ts(later)
    assert got.HasField("quiet_hours") and got.quiet_hours.end_minute == 420
    assert not stub.GetProfile(pb.GetProfileRequest(name="profiles/m2")).profile.HasField("quiet_hours")
    with pytest.raises(grpc.RpcError) as err:
        stub.GetProfile(pb.GetProfileRequest(name="profiles/nobody"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_ingest_stream_traits_and_contactability(start, redis_url):
    stub_for = start(rfm_window_days=0)
    stub = stub_for("service")
    t = now_ms()
    unary = stub.IngestEvents(pb.IngestEventsRequest(events=[
        event("a1", "alice", t - 5000, 20.0, sku=common_pb2.Value(string_value="cd-1")),
        event("a1", "alice", t - 5000, 20.0),
        event("b1", "bob", t - 86_400_000 * 3, 5.0),
    ]))
    assert (unary.accepted_count, unary.duplicate_count, unary.rejected_count) == (2, 1, 0)
    assert [r.outcome for r in unary.results] == [
        pb.EVENT_OUTCOME_STORED, pb.EVENT_OUTCOME_DUPLICATE, pb.EVENT_OUTCOME_STORED]

    def messages():
        for m in range(3):
            yield pb.StreamEventsRequest(events=[
                event(f"s{m}-{i}", f"user{i}", t - 1000 * (m + 1), 1.0 + i) for i in range(4)])
        yield pb.StreamEventsRequest(events=[event("a1", "alice", t - 5000, 20.0)])

    streamed = stub.StreamEvents(messages())
    assert (streamed.accepted_count, streamed.duplicate_count, streamed.message_count) == (12, 1, 4)
    assert redis.Redis.from_url(redis_url).xlen(EVENTS_STREAM) == 14

    listed = stub.ListEvents(pb.ListEventsRequest(parent="profiles/alice"))
    assert [e.event_id for e in listed.events] == ["a1"]
    assert listed.events[0].properties["sku"].string_value == "cd-1" and listed.events[0].value == 20.0

    full = stub.RecomputeTraits(pb.RecomputeTraitsRequest())
    assert full.full and full.population == 6
    traits = stub.GetTraits(pb.GetTraitsRequest(name="profiles/alice")).traits
    assert traits.frequency == 1 and traits.monetary == 20.0 and traits.r_score >= 1
    assert traits.lifecycle_stage == pb.LIFECYCLE_STAGE_NEW
    assert traits.rfm_group != pb.RFM_GROUP_UNSPECIFIED
    assert traits.event_counts[0].count_7d == 1

    written = stub.WriteScores(pb.WriteScoresRequest(scores=[
        pb.ModelScore(user_id=traits.user_id, model_name="churn", score=0.3, model_version="v1"),
        pb.ModelScore(user_id=10_000_000, model_name="churn", score=0.3, model_version="v1"),
    ]))
    assert written.written_count == 1 and written.results[0].index == 1
    assert written.results[0].status.code == grpc.StatusCode.NOT_FOUND.value[0]

    operator = stub_for("operator")
    operator.UpdateConsent(pb.UpdateConsentRequest(name="profiles/alice", consents=[
        pb.Consent(channel=common_pb2.CHANNEL_SMS, subscribed=True, source="form")]))
    answer = stub.BatchGetContactability(pb.BatchGetContactabilityRequest(
        names=["profiles/alice", "profiles/nobody"], user_ids=[traits.user_id],
        channels=[common_pb2.CHANNEL_SMS, common_pb2.CHANNEL_EMAIL]))
    alice, nobody, by_id = answer.users
    assert list(alice.contactable_channels) == [common_pb2.CHANNEL_SMS]
    assert not nobody.found and by_id.name == "profiles/alice"
    consent = {c.channel: c for c in alice.consents}
    assert consent[common_pb2.CHANNEL_SMS].source == "form" and consent[common_pb2.CHANNEL_EMAIL].defaulted


def test_roles_and_erasure(start, redis_url):
    stub_for = start()
    operator, admin = stub_for("operator"), stub_for("admin")
    operator.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="carol")))
    with pytest.raises(grpc.RpcError) as err:
        operator.EraseUser(pb.EraseUserRequest(name="profiles/carol"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        operator.WriteScores(pb.WriteScoresRequest(scores=[pb.ModelScore(external_id="carol")]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    erased = admin.EraseUser(pb.EraseUserRequest(name="profiles/carol", reason="ticket 7"))
    assert erased.deleted_rows["profiles"] == 1 and erased.erasure_id
    notice = redis.Redis.from_url(redis_url, decode_responses=True).xrange("profile:erasures")[-1][1]
    assert notice["user_id"] == str(erased.user_id)


def test_merge_identity_over_grpc(start):
    stub = start()()
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="known")))
    stub.IngestEvents(pb.IngestEventsRequest(events=[event("d1", "device-9", now_ms() - 10, 1.0)]))
    merged = stub.MergeIdentity(pb.MergeIdentityRequest(name="profiles/known", anonymous_id="device-9"))
    assert merged.anonymous_profile_merged
    assert stub.GetTraits(pb.GetTraitsRequest(name="profiles/known")).traits.frequency == 1


# --- bad input -------------------------------------------------------------------------------


def _fields(err) -> list[str]:
    return field_violations(err.value)


def test_bad_profile_input_names_the_field(start):
    stub = start()()
    stub.CreateAttribute(pb.CreateAttributeRequest(attribute=pb.Attribute(
        name="attributes/age", value_type=common_pb2.VALUE_TYPE_NUMBER)))
    with pytest.raises(grpc.RpcError) as err:  # unknown attribute
        stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(
            external_id="u", attributes={"shoe": common_pb2.Value(number_value=42)})))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _fields(err) == ["profile.attributes[shoe]"]
    with pytest.raises(grpc.RpcError) as err:  # wrong type
        stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(
            external_id="u", attributes={"age": common_pb2.Value(string_value="old")})))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _fields(err) == ["profile.attributes[age]"]
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateAttribute(pb.CreateAttributeRequest(attribute=pb.Attribute(name="attributes/x")))
    assert _fields(err) == ["attribute.value_type"]
    with pytest.raises(grpc.RpcError) as err:
        stub.GetProfile(pb.GetProfileRequest(name="users/u"))
    assert _fields(err) == ["name"]
    with pytest.raises(grpc.RpcError) as err:
        stub.ListProfiles(pb.ListProfilesRequest(page_token="garbage"))
    assert _fields(err) == ["page_token"]
    for field in ("rfm_group", "lifecycle_stage"):  # an enum number this server does not know
        with pytest.raises(grpc.RpcError) as err:
            stub.ListProfiles(pb.ListProfilesRequest(**{field: 99}))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _fields(err) == [field]


def test_bad_event_batches(start):
    stub = start(max_batch_events=3)()
    with pytest.raises(grpc.RpcError) as err:  # empty
        stub.IngestEvents(pb.IngestEventsRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _fields(err) == ["events"]
    t = now_ms()
    with pytest.raises(grpc.RpcError) as err:  # oversize
        stub.IngestEvents(pb.IngestEventsRequest(events=[event(f"o{i}", "u", t, 1.0) for i in range(4)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _fields(err) == ["events"]
    # A partially bad batch: the valid item is committed and each bad item reported.
    far_future = t + 365 * 86_400_000
    mixed = stub.IngestEvents(pb.IngestEventsRequest(events=[
        event("good", "u", t - 10, 1.0),
        event("future", "u", far_future, 1.0),
        pb.Event(event_id="nots", user_id="u", event_type="view"),
    ]))
    assert (mixed.accepted_count, mixed.rejected_count) == (1, 2)
    bad = mixed.results[1]
    assert bad.outcome == pb.EVENT_OUTCOME_REJECTED
    assert bad.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "events[1].timestamp" in bad.status.message
    assert "events[2].timestamp" in mixed.results[2].status.message
    assert stub.ListEvents(pb.ListEventsRequest(parent="profiles/u")).events[0].event_id == "good"


def test_unknown_user_refused_when_configured(start):
    stub = start(unknown_user="refuse")()
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="known")))
    t = now_ms()
    result = stub.IngestEvents(pb.IngestEventsRequest(events=[
        event("k1", "known", t, 1.0), event("g1", "ghost", t, 1.0)]))
    assert result.accepted_count == 1
    assert result.results[1].status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "events[1].user_id" in result.results[1].status.message

    def messages():
        yield pb.StreamEventsRequest(events=[event("k2", "known", t, 1.0)])
        yield pb.StreamEventsRequest(events=[event("k3", "known", t, 1.0), event("g2", "ghost", t, 1.0)])

    with pytest.raises(grpc.RpcError) as err:
        stub.StreamEvents(messages())
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "messages[1].events[1].user_id" in err.value.details()
    kept = [e.event_id for e in stub.ListEvents(pb.ListEventsRequest(parent="profiles/known")).events]
    assert sorted(kept) == ["k1", "k2"]  # the first message stays, the bad one commits nothing


def test_malformed_stream_midway_keeps_earlier_messages(start):
    stub = start()()
    t = now_ms()

    def messages():
        yield pb.StreamEventsRequest(events=[event("m0", "u", t - 30, 1.0)])
        yield pb.StreamEventsRequest(events=[event("m1", "u", t - 20, 1.0)])
        yield pb.StreamEventsRequest(events=[event("m2", "u", t - 10, 1.0), event("m3", "u", t + 10**9, 1.0)])
        yield pb.StreamEventsRequest(events=[event("m4", "u", t, 1.0)])

    with pytest.raises(grpc.RpcError) as err:
        stub.StreamEvents(messages())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _fields(err) == ["messages[2].events[1].timestamp"]
    kept = sorted(e.event_id for e in stub.ListEvents(pb.ListEventsRequest(parent="profiles/u")).events)
    assert kept == ["m0", "m1"]

    # Bytes that are not a StreamEventsRequest at all, sent as the second message.
    def raw_messages():
        yield pb.StreamEventsRequest(events=[event("r0", "u", t - 5, 1.0)]).SerializeToString()
        yield b"\xff\xff\xff\xff"

    call = stub.channel.stream_unary(
        "/marketing.profile.v1.ProfileService/StreamEvents",
        request_serializer=None,
        response_deserializer=pb.StreamEventsResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as err:
        call(raw_messages())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _fields(err) == ["messages[1]"]
    assert "r0" in [e.event_id for e in stub.ListEvents(pb.ListEventsRequest(parent="profiles/u")).events]


def _traits(stub, user):
    return stub.GetTraits(pb.GetTraitsRequest(name=f"profiles/{user}")).traits


def test_stream_flushes_in_batches_counts_and_announces_once(start, redis_url):
    # Batches of 3 events: several flushes in flight, duplicates across them and a bad
    # message after some were committed.
    stub = start(stream_flush_events=3, stream_traits="sync", rfm_window_days=0)()
    t = now_ms()

    def messages():
        for m in range(4):
            yield pb.StreamEventsRequest(events=[
                event(f"f{m}-{i}", f"buyer{i}", t - 1000 * (m + 1), 2.0) for i in range(2)])
        yield pb.StreamEventsRequest(events=[event("f0-0", "buyer0", t - 1000, 2.0),
                                             event("f0-0", "buyer0", t - 1000, 2.0)])

    done = stub.StreamEvents(messages())
    assert (done.accepted_count, done.duplicate_count, done.message_count) == (8, 2, 5)
    assert redis.Redis.from_url(redis_url).xlen(EVENTS_STREAM) == 8
    # Synchronous traits: fresh when the stream answers.
    assert _traits(stub, "buyer0").frequency == 4 and _traits(stub, "buyer1").monetary == 8.0

    def broken():
        for m in range(3):
            yield pb.StreamEventsRequest(events=[event(f"g{m}", "buyer2", t - 10 * m, 1.0)])
        yield pb.StreamEventsRequest(events=[event("g-bad", "buyer2", t, float("inf"))])

    with pytest.raises(grpc.RpcError) as err:
        stub.StreamEvents(broken())
    assert _fields(err) == ["messages[3].events[0].value"]
    kept = sorted(e.event_id for e in stub.ListEvents(pb.ListEventsRequest(parent="profiles/buyer2")).events)
    assert kept == ["g0", "g1", "g2"]
    assert redis.Redis.from_url(redis_url).xlen(EVENTS_STREAM) == 11
    assert _traits(stub, "buyer2").frequency == 3


def test_stream_traits_refreshed_in_background(start):
    stub = start(stream_traits="background", rfm_window_days=0)()
    t = now_ms()
    done = stub.StreamEvents(iter([pb.StreamEventsRequest(events=[
        event(f"b{i}", "late", t - 1000 * i, 3.0) for i in range(5)])]))
    assert done.accepted_count == 5
    # The answer does not wait for the refresh; it follows within the documented bound.
    deadline = time.monotonic() + 5
    while _traits(stub, "late").frequency != 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    traits = _traits(stub, "late")
    assert traits.frequency == 5 and traits.monetary == 15.0
    assert traits.lifecycle_stage == pb.LIFECYCLE_STAGE_NEW


def test_infinite_event_value_refused(start):
    stub = start()()
    t = now_ms()
    result = stub.IngestEvents(pb.IngestEventsRequest(events=[
        event("v1", "u", t, float("-inf")), event("v2", "u", t, 1.5)]))
    assert (result.accepted_count, result.rejected_count) == (1, 1)
    assert "events[0].value" in result.results[0].status.message


# --- batch traits and consent ----------------------------------------------------------------


def _status_fields(status) -> list[str]:
    """The fields named by the BadRequest details of an item's google.rpc.Status."""
    from google.rpc import error_details_pb2

    out = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.extend(v.field for v in bad.field_violations)
    return out


def test_batch_get_traits_matches_get_traits_and_reports_unknown_users(start):
    stub_for = start(max_batch_items=4)
    stub = stub_for("operator")
    t = now_ms()
    stub.IngestEvents(pb.IngestEventsRequest(events=[
        event("p1", "ann", t - 86_400_000, 30.0),
        event("p2", "ann", t - 5000, 12.5),
        event("v1", "ann", t - 4000, event_type="view"),
        event("p3", "ben", t - 86_400_000 * 40, 7.0),
    ]))
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="quiet")))
    stub.RecomputeTraits(pb.RecomputeTraitsRequest())
    stub_for("service").WriteScores(pb.WriteScoresRequest(scores=[
        pb.ModelScore(external_id="ann", model_name="churn", score=0.25, model_version="v2"),
        pb.ModelScore(external_id="ann", model_name="repurchase", score=0.75, model_version="v1"),
    ]))
    stub.MergeIdentity(pb.MergeIdentityRequest(name="profiles/ben", anonymous_id="device-1"))
    names = ["profiles/ann", "profiles/ghost", "profiles/device-1", "profiles/quiet"]
    results = stub_for("service").BatchGetTraits(pb.BatchGetTraitsRequest(names=names)).results
    assert [r.name for r in results] == names
    assert [r.found for r in results] == [True, False, True, True]
    ann, ghost, alias, quiet = results
    assert not ghost.HasField("traits")
    # Each found user's traits are exactly what GetTraits returns for them.
    for result in (ann, alias, quiet):
        single = stub.GetTraits(pb.GetTraitsRequest(name=result.name)).traits
        assert result.traits == single
    assert ann.traits.frequency == 2 and ann.traits.monetary == pytest.approx(42.5)
    assert [(c.event_type, c.count_total) for c in ann.traits.event_counts] == [
        ("purchase", 2), ("view", 1)]
    assert [(s.model_name, s.score) for s in ann.traits.scores] == [
        ("churn", 0.25), ("repurchase", 0.75)]
    assert alias.traits.frequency == 1 and alias.traits.name == "profiles/device-1"
    assert not quiet.traits.event_counts and quiet.traits.frequency == 0


def test_batch_get_traits_bad_input_names_the_field(start):
    stub = start(max_batch_items=2)()
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchGetTraits(pb.BatchGetTraitsRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _fields(err) == ["names"]
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchGetTraits(pb.BatchGetTraitsRequest(names=["profiles/a", "users/b"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _fields(err) == ["names[1]"]
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchGetTraits(pb.BatchGetTraitsRequest(names=["profiles/a", "profiles/b c"]))
    assert _fields(err) == ["names[1]"]
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchGetTraits(pb.BatchGetTraitsRequest(names=[f"profiles/u{i}" for i in range(3)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _fields(err) == ["names"]


def test_batch_update_consent_stores_good_items_and_refuses_bad_ones_alone(start):
    stub_for = start(max_batch_items=6)
    stub = stub_for("service")
    for user in ("cat", "dan"):
        stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id=user)))
    t = now_ms()
    sms, push = common_pb2.CHANNEL_SMS, common_pb2.CHANNEL_PUSH

    def change(name, channel, subscribed, at_ms, source="test"):
        return pb.UpdateConsentRequest(name=name, consents=[pb.Consent(
            channel=channel, subscribed=subscribed, source=source, update_time=ts(at_ms))])

    answer = stub.BatchUpdateConsent(pb.BatchUpdateConsentRequest(requests=[
        change("profiles/cat", sms, True, t - 2000),
        change("profiles/ghost", sms, True, t),
        change("profiles/dan", push, False, t),
        change("dan", push, False, t),
        change("profiles/dan", 0, False, t),
        change("profiles/cat", sms, False, t - 1000),  # newer than the first: it wins
    ]))
    codes = [r.status.code for r in answer.results]
    ok, invalid, not_found = (grpc.StatusCode.OK.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0],
                              grpc.StatusCode.NOT_FOUND.value[0])
    assert codes == [ok, not_found, ok, invalid, invalid, ok]
    assert answer.updated_count == 3 and answer.results[1].name == "profiles/ghost"
    assert _status_fields(answer.results[3].status) == ["requests[3].name"]
    assert _status_fields(answer.results[4].status) == ["requests[4].consents[0].channel"]
    consents = {c.channel: c for c in stub.GetConsent(pb.GetConsentRequest(name="profiles/cat")).consents}
    assert consents[sms].subscribed is False and not consents[sms].defaulted
    consents = {c.channel: c for c in stub.GetConsent(pb.GetConsentRequest(name="profiles/dan")).consents}
    assert consents[push].subscribed is False and not consents[push].defaulted
    # An older change than the stored one is ignored, as in UpdateConsent.
    stub.BatchUpdateConsent(pb.BatchUpdateConsentRequest(requests=[
        change("profiles/dan", push, True, t - 60_000)]))
    consents = {c.channel: c for c in stub.GetConsent(pb.GetConsentRequest(name="profiles/dan")).consents}
    assert consents[push].subscribed is False
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchUpdateConsent(pb.BatchUpdateConsentRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _fields(err) == ["requests"]
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchUpdateConsent(pb.BatchUpdateConsentRequest(
            requests=[change("profiles/cat", sms, True, t)] * 7))
    assert _fields(err) == ["requests"]
    with pytest.raises(grpc.RpcError) as err:  # reading roles may not write consent
        stub_for("approver").BatchUpdateConsent(pb.BatchUpdateConsentRequest(
            requests=[change("profiles/cat", sms, True, t)]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- batch profile updates -------------------------------------------------------------------


def _mask(*paths):
    return field_mask_pb2.FieldMask(paths=list(paths))


def _update(name, mask, **fields):
    return pb.UpdateProfileRequest(profile=pb.Profile(name=name, **fields), update_mask=mask)


def _outcome(call) -> tuple[int, list[str]]:
    """(code, fields named) of an UpdateProfile call."""
    try:
        call()
    except grpc.RpcError as err:
        return err.code().value[0], field_violations(err)
    return grpc.StatusCode.OK.value[0], []


def _comparable(profile: pb.Profile) -> pb.Profile:
    """A profile without what tells twins apart (ids, names, times)."""
    out = pb.Profile()
    out.CopyFrom(profile)
    for field in ("name", "external_id", "user_id", "create_time", "update_time"):
        out.ClearField(field)
    return out


def _update_cases(user: str, later: timestamp_pb2.Timestamp) -> list[pb.UpdateProfileRequest]:
    """Updates of the twins ``{user}-a`` .. ``{user}-d``, one per case (good and bad)."""
    number, text = common_pb2.Value(number_value=41), common_pb2.Value(string_value="Rome")
    return [
        _update(f"profiles/{user}-a", _mask("attributes.age", "time_zone"),
                attributes={"age": number}, time_zone="Asia/Tokyo"),
        _update(f"profiles/{user}-ghost", _mask("time_zone"), time_zone="Asia/Tokyo"),
        _update(f"profiles/{user}-a", _mask("external_id")),
        _update(f"profiles/{user}-a", _mask("attributes.age"), attributes={"age": text}),
        _update(f"profiles/{user}-b", _mask("attributes", "tags", "quiet_hours"),
                attributes={"city": text}, tags=[pb.Tag(tag="vip"), pb.Tag(tag="t", expire_time=later)],
                quiet_hours=pb.QuietHours(start_minute=1320, end_minute=420)),
        _update(f"profiles/{user}-c", _mask("notifications_disabled", "app_uninstalled"),
                notifications_disabled=True, app_uninstalled=True),
        _update(f"users/{user}-c", _mask("time_zone"), time_zone="UTC"),
        _update(f"profiles/{user}-c", _mask()),
        _update(f"profiles/{user}-gone", _mask("app_uninstalled"), app_uninstalled=True),
        # Two changes of one user apply in order: the second replaces what the first set.
        _update(f"profiles/{user}-b", _mask("attributes.age", "time_zone"),
                attributes={"age": number}, time_zone="Europe/Rome"),
        _update(f"profiles/{user}-b", _mask("attributes", "quiet_hours"),
                attributes={"age": common_pb2.Value(number_value=7)}),
        pb.UpdateProfileRequest(profile=pb.Profile(external_id=f"{user}-d", time_zone="Asia/Seoul"),
                                update_mask=_mask("time_zone", "attributes.city")),
    ]


def _twins(stub, user: str) -> None:
    """Users ``{user}-a`` .. ``{user}-d`` in one starting state, and ``{user}-gone`` erased."""
    start = {"age": common_pb2.Value(number_value=30), "city": common_pb2.Value(string_value="Paris")}
    for suffix in ("a", "b", "c", "d", "gone"):
        stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(
            external_id=f"{user}-{suffix}", attributes=start, tags=[pb.Tag(tag="old")],
            time_zone="Europe/Paris")))
    stub.EraseUser(pb.EraseUserRequest(name=f"profiles/{user}-gone", reason="test"))


def test_batch_update_profiles_gives_each_item_what_update_profile_gives_it(start):
    stub = start(max_batch_items=12)("admin")
    for name, kind in (("age", common_pb2.VALUE_TYPE_NUMBER), ("city", common_pb2.VALUE_TYPE_STRING)):
        stub.CreateAttribute(pb.CreateAttributeRequest(
            attribute=pb.Attribute(name=f"attributes/{name}", value_type=kind)))
    _twins(stub, "one")
    _twins(stub, "many")
    later = ts(now_ms() + 3_600_000)
    singles = [_outcome(lambda r=r: stub.UpdateProfile(r)) for r in _update_cases("one", later)]
    batch = _update_cases("many", later)
    answer = stub.BatchUpdateProfiles(pb.BatchUpdateProfilesRequest(requests=batch))
    ok, invalid, not_found = (grpc.StatusCode.OK.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0],
                              grpc.StatusCode.NOT_FOUND.value[0])
    codes = [r.status.code for r in answer.results]
    assert codes == [ok, not_found, invalid, invalid, ok, ok, invalid, invalid, not_found, ok, ok, ok]
    assert answer.updated_count == codes.count(ok)
    assert [r.index for r in answer.results] == list(range(len(batch)))
    assert [r.name for r in answer.results] == [
        r.profile.name or f"profiles/{r.profile.external_id}" for r in batch]
    assert _status_fields(answer.results[2].status) == ["requests[2].update_mask"]
    assert _status_fields(answer.results[3].status) == ["requests[3].profile.attributes[age]"]
    assert _status_fields(answer.results[6].status) == ["requests[6].profile.name"]
    # Each item's status is UpdateProfile's, its fields named inside the item.
    for i, (result, (code, fields)) in enumerate(zip(answer.results, singles)):
        assert result.status.code == code, i
        assert _status_fields(result.status) == [f"requests[{i}].{f}" for f in fields], i
    # And each user ends as the same calls one by one left its twin.
    for suffix in ("a", "b", "c", "d"):
        got = stub.BatchGetProfiles(pb.BatchGetProfilesRequest(
            names=[f"profiles/one-{suffix}", f"profiles/many-{suffix}"])).profiles
        assert _comparable(got[0]) == _comparable(got[1]), suffix
    b = stub.GetProfile(pb.GetProfileRequest(name="profiles/many-b")).profile
    assert dict(b.attributes) == {"age": common_pb2.Value(number_value=7)}
    assert [t.tag for t in b.tags] == ["t", "vip"] and not b.HasField("quiet_hours")
    assert b.time_zone == "Europe/Rome"
    c = stub.GetProfile(pb.GetProfileRequest(name="profiles/many-c")).profile
    assert c.notifications_disabled and c.app_uninstalled and c.time_zone == "Europe/Paris"
    d = stub.GetProfile(pb.GetProfileRequest(name="profiles/many-d")).profile
    assert d.time_zone == "Asia/Seoul" and set(d.attributes) == {"age"}
    # A refused item changed nothing: many-a kept its other fields, its age is from item 0.
    a = stub.GetProfile(pb.GetProfileRequest(name="profiles/many-a")).profile
    assert a.attributes["age"].number_value == 41 and a.attributes["city"].string_value == "Paris"


def test_batch_update_profiles_refuses_empty_oversize_and_reading_roles(start):
    stub_for = start(max_batch_items=3)
    stub = stub_for("service")
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="u")))
    flag = _update("profiles/u", _mask("app_uninstalled"), app_uninstalled=True)
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchUpdateProfiles(pb.BatchUpdateProfilesRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _fields(err) == ["requests"]
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchUpdateProfiles(pb.BatchUpdateProfilesRequest(requests=[flag] * 4))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _fields(err) == ["requests"]
    assert not stub.GetProfile(pb.GetProfileRequest(name="profiles/u")).profile.app_uninstalled
    with pytest.raises(grpc.RpcError) as err:  # the role of UpdateProfile: reading roles may not
        stub_for("approver").BatchUpdateProfiles(pb.BatchUpdateProfilesRequest(requests=[flag]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        stub_for("approver").UpdateProfile(flag)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    answer = stub.BatchUpdateProfiles(pb.BatchUpdateProfilesRequest(requests=[flag] * 3))
    assert answer.updated_count == 3
    assert stub.GetProfile(pb.GetProfileRequest(name="profiles/u")).profile.app_uninstalled


def _stream_entries(client) -> dict[str, int]:
    """Entries per Redis stream."""
    return {key: client.xlen(key) for key in client.scan_iter(_type="stream")}


def test_batch_update_profiles_announces_what_update_profile_announces(start, redis_url):
    """Whatever UpdateProfile publishes (for device flags nothing: no segment rule reads
    them; for tags one profile:changes entry), BatchUpdateProfiles publishes the same for
    each of its items."""
    stub = start()("service")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for user in ("s1", "s2", "b1", "b2"):
        stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id=user)))

    def change(user, **flags):
        return _update(f"profiles/{user}", _mask(*flags), **flags)

    before = _stream_entries(client)
    def tag(user):
        return _update(f"profiles/{user}", _mask("tags"), tags=[pb.Tag(tag="vip")])

    stub.UpdateProfile(change("s1", notifications_disabled=True))
    stub.UpdateProfile(change("s2", app_uninstalled=True))
    stub.UpdateProfile(tag("s2"))
    after_singles = _stream_entries(client)
    stub.BatchUpdateProfiles(pb.BatchUpdateProfilesRequest(requests=[
        change("b1", notifications_disabled=True), change("b2", app_uninstalled=True),
        tag("b2")]))
    after_batch = _stream_entries(client)
    singles = {k: n - before.get(k, 0) for k, n in after_singles.items() if n != before.get(k, 0)}
    batched = {k: n - after_singles.get(k, 0) for k, n in after_batch.items()
               if n != after_singles.get(k, 0)}
    assert batched == singles == {"profile:changes": 1}
    client.close()
