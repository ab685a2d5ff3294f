"""Delivery's gRPC wiring against the real profile and segment servers on loopback."""

from __future__ import annotations

import time

import pytest
import redis

from marketing.common.v1 import common_pb2 as cpb
from marketing.profile.v1 import profile_service_pb2 as ppb
from marketing.profile.v1 import profile_service_pb2_grpc as ppb_grpc
from marketing.segment.v1 import segment_service_pb2 as spb
from marketing.segment.v1 import segment_service_pb2_grpc as spb_grpc
from services.common.testing import channel
from services.delivery import caps as caps_mod
from services.delivery.core import DeliveryCore
from services.delivery.gateways import RecordingSink, Router
from services.delivery.grpc_sources import (
    GrpcConsentWriter,
    GrpcProfileDirectory,
    GrpcSegmentSource,
)
from services.delivery.outcomes import ConsentChange
from services.delivery.store import Store, open_engine
from tests.delivery.conftest import approved_plan, spec, touch
from tests.delivery.grpc_world import create_segment, ingest, live_suite, seed_users


@pytest.fixture
def suite(tmp_path, embedded_redis_url):
    with live_suite(tmp_path, embedded_redis_url) as running:
        seed_users(running["profile"]["address"], 6,
                   city_of=lambda i: "Paris" if i % 2 else "Rome")
        yield running


def test_segment_snapshot_is_taken_at_send_time_through_create_and_stream(suite):
    segment = create_segment(suite["segment"]["address"], 'city = "Paris"')
    source = GrpcSegmentSource(channel(suite["segment"]["address"], "service"))
    assert list(source.snapshot(segment)) == [1, 3, 5]
    # A later send sees who is in the segment then: a new snapshot version each time.
    ppb_grpc.ProfileServiceStub(channel(suite["profile"]["address"], "admin")).CreateProfile(
        ppb.CreateProfileRequest(profile=ppb.Profile(
            external_id="u7", attributes={"city": cpb.Value(string_value="Paris")})))
    assert list(source.snapshot(segment)) == [1, 3, 5, 7]
    listed = spb_grpc.SegmentServiceStub(channel(suite["segment"]["address"], "operator")) \
        .ListSnapshots(spb.ListSnapshotsRequest(parent=segment)).snapshots
    assert [s.version for s in listed] == [2, 1]


def test_profile_directory_reads_contactability_attributes_and_traits_in_batches(suite):
    directory = GrpcProfileDirectory(channel(suite["profile"]["address"], "service"))
    assert directory.resolve(["u2", "u9", "u2"]) == {"u2": 2}
    assert {"first_name", "city"} <= directory.attribute_names()
    contacts = directory.contactability([1, 2, 99], "push")
    assert set(contacts) == {1, 2} and contacts[1].consent is True
    assert contacts[2].external_id == "u2" and contacts[2].time_zone == "UTC"
    ingest(suite["profile"]["address"], [("e1", "u1", "purchase", 30.0),
                                         ("e2", "u1", "purchase", 12.5)])
    attrs = directory.template_attributes([1, 2], {"first_name", "frequency", "monetary"})
    assert attrs[1]["first_name"] == "Name1" and attrs[2]["first_name"] == "Name2"
    assert attrs[1]["frequency"] == 2 and attrs[1]["monetary"] == pytest.approx(42.5)
    assert attrs[2]["frequency"] == 0


def test_consent_writer_updates_the_profile_service(suite):
    directory = GrpcProfileDirectory(channel(suite["profile"]["address"], "service"))
    writer = GrpcConsentWriter(channel(suite["profile"]["address"], "service"))
    now = int(time.time() * 1000)
    # The profile service ignores a consent change older than the stored choice.
    writer.apply([ConsentChange(1, "u1", "push", "unsubscribed", now - 86_400_000, "test"),
                  ConsentChange(2, "u2", "push", "unsubscribed", now, "test"),
                  ConsentChange(3, "u3", "push", "notification_disabled", now, "test"),
                  ConsentChange(4, "u4", "push", "uninstalled", now, "test")])
    contacts = directory.contactability([1, 2, 3, 4], "push")
    assert contacts[1].consent is True and contacts[2].consent is False
    assert contacts[3].notifications_disabled and not contacts[1].notifications_disabled
    assert contacts[4].app_uninstalled


def _handled(method: str) -> float:
    """RPCs of the profile service's ``method`` the in-process servers completed so far."""
    from services.common.observability import RPC_HANDLED

    return sum(m.value for metric in RPC_HANDLED.collect() for m in metric.samples
               if m.name.endswith("_total")
               and m.labels["grpc_service"] == "marketing.profile.v1.ProfileService"
               and m.labels["grpc_method"] == method)


def test_template_traits_come_in_one_batch_call(suite):
    address = suite["profile"]["address"]
    directory = GrpcProfileDirectory(channel(address, "service"))
    ingest(address, [("t1", "u1", "purchase", 10.0), ("t2", "u4", "purchase", 4.0),
                     ("t3", "u4", "purchase", 6.0)])
    admin = ppb_grpc.ProfileServiceStub(channel(address, "admin"))
    admin.EraseUser(ppb.EraseUserRequest(name="profiles/u3", reason="test"))
    batches, singles = _handled("BatchGetTraits"), _handled("GetTraits")
    attrs = directory.template_attributes([1, 2, 3, 4, 5, 6], {"first_name", "frequency",
                                                               "monetary"})
    assert _handled("BatchGetTraits") == batches + 1 and _handled("GetTraits") == singles
    assert set(attrs) == {1, 2, 4, 5, 6}  # the erased user is gone, the batch did not fail
    assert attrs[4] == {"first_name": "Name4", "frequency": 2, "monetary": pytest.approx(10.0)}
    assert attrs[1]["frequency"] == 1 and attrs[6]["frequency"] == 0
    # A user erased after the audience was resolved is skipped by the traits batch itself.
    assert set(directory._traits(["u1", "u3", "u4"], {"frequency"})) == {"u1", "u4"}


def _outcome_writer(suite):
    """The outcome intake's writer and a directory over the live profile service, after u5
    was erased; and the instant now."""
    address = suite["profile"]["address"]
    admin = ppb_grpc.ProfileServiceStub(channel(address, "admin"))
    admin.EraseUser(ppb.EraseUserRequest(name="profiles/u5", reason="test"))
    return (GrpcProfileDirectory(channel(address, "service")),
            GrpcConsentWriter(channel(address, "service")), int(time.time() * 1000))


def test_opt_outs_go_in_one_batch_call_and_an_erased_user_is_done_with(suite):
    directory, writer, now = _outcome_writer(suite)
    batches, singles = _handled("BatchUpdateConsent"), _handled("UpdateConsent")
    writer.apply([ConsentChange(u, f"u{u}", "sms", "unsubscribed", now, "stop-keyword")
                  for u in (1, 2, 5, 6)])
    assert _handled("BatchUpdateConsent") == batches + 1 and _handled("UpdateConsent") == singles
    contacts = directory.contactability([1, 2, 3, 6], "sms")
    assert [contacts[u].consent for u in (1, 2, 3, 6)] == [False, False, None, False]


def test_device_flags_go_in_batch_calls_and_an_erased_user_is_done_with(suite):
    directory, writer, now = _outcome_writer(suite)
    batches, singles = _handled("BatchUpdateProfiles"), _handled("UpdateProfile")
    writer.apply([ConsentChange(u, f"u{u}", "push",
                                "notification_disabled" if u % 2 else "uninstalled", now, "sdk")
                  for u in (1, 2, 3, 4, 5)])
    assert _handled("BatchUpdateProfiles") == batches + 1 and _handled("UpdateProfile") == singles
    contacts = directory.contactability([1, 2, 3, 4, 6], "push")
    assert [contacts[u].notifications_disabled for u in (1, 2, 3, 4, 6)] == [
        True, False, True, False, False]
    assert [contacts[u].app_uninstalled for u in (1, 2, 3, 4, 6)] == [
        False, True, False, True, False]
    # Batches of up to batch_size users (the profile service's limit by default).
    small = GrpcConsentWriter(channel(suite["profile"]["address"], "service"), batch_size=2)
    batches = _handled("BatchUpdateProfiles")
    small.apply([ConsentChange(u, f"u{u}", "push", "uninstalled", now, "sdk")
                 for u in (1, 2, 3, 5, 6)])
    assert _handled("BatchUpdateProfiles") == batches + 3
    assert all(c.app_uninstalled for c in directory.contactability([1, 2, 3, 6], "push").values())
    # Any other refusal of an item is an error: the intake keeps the change for its retry.
    with pytest.raises(RuntimeError, match="device flag"):
        writer.apply([ConsentChange(7, "no such/id", "push", "uninstalled", now, "sdk"),
                      ConsentChange(5, "u5", "push", "uninstalled", now, "sdk")])


def test_a_segment_touch_sends_through_the_grpc_sources(suite, tmp_path, embedded_redis_url):
    segment = create_segment(suite["segment"]["address"], 'city = "Paris"')
    store = Store(open_engine(f"sqlite:///{tmp_path / 'delivery-core.db'}"))
    guard = caps_mod.CapGuard(redis.Redis.from_url(embedded_redis_url), caps_mod.DEFAULT_RULES)
    guard.ensure_ready(store.engine)
    core = DeliveryCore(store, guard, Router({}, RecordingSink(store)),
                        GrpcProfileDirectory(channel(suite["profile"]["address"], "service")),
                        GrpcSegmentSource(channel(suite["segment"]["address"], "service")))
    plan = approved_plan(core, spec([touch(segment=segment, body="Hi {{ first_name }}")]))
    funnel = core.run_due(plan_id=plan.id, wait_for_leases=True)
    assert (funnel.audience, funnel.sent) == (3, 3)
    assert core.preview(plan.id, "t1", "u3")["body"] == "Hi Name3"
