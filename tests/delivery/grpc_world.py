"""A live profile + segment (+ delivery) suite on loopback for component tests, and its seeding."""

from __future__ import annotations

import contextlib
import time

import redis
from google.protobuf import timestamp_pb2

from marketing.common.v1 import common_pb2 as cpb
from marketing.profile.v1 import profile_service_pb2 as ppb
from marketing.profile.v1 import profile_service_pb2_grpc as ppb_grpc
from marketing.segment.v1 import segment_service_pb2 as spb
from marketing.segment.v1 import segment_service_pb2_grpc as spb_grpc
from services.common.testing import channel
from tests.suite import running_suite


@contextlib.contextmanager
def live_suite(tmp_path, redis_url, services=("profile", "segment")):
    """The services started in-process on port 0, on a Redis emptied first."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    with running_suite(tmp_path, redis_url, services=services) as suite:
        yield suite


def ts(ms: int) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromMilliseconds(ms)
    return out


def seed_users(profile_address: str, count: int, city_of=lambda i: "Paris",
               push_consent=True) -> list[str]:
    """Creates the attributes first_name and city, then ``count`` users u1..uN with push
    consent; returns their external ids."""
    stub = ppb_grpc.ProfileServiceStub(channel(profile_address, "admin"))
    for name in ("first_name", "city"):
        stub.CreateAttribute(ppb.CreateAttributeRequest(attribute=ppb.Attribute(
            name=f"attributes/{name}", value_type=cpb.VALUE_TYPE_STRING)))
    ids = []
    for i in range(1, count + 1):
        external_id = f"u{i}"
        stub.CreateProfile(ppb.CreateProfileRequest(profile=ppb.Profile(
            external_id=external_id, time_zone="UTC",
            attributes={"first_name": cpb.Value(string_value=f"Name{i}"),
                        "city": cpb.Value(string_value=city_of(i))})))
        if push_consent:
            stub.UpdateConsent(ppb.UpdateConsentRequest(
                name=f"profiles/{external_id}",
                consents=[ppb.Consent(channel=cpb.CHANNEL_PUSH, subscribed=True,
                                      source="signup")]))
        ids.append(external_id)
    return ids


def ingest(profile_address: str, events: list[tuple[str, str, str, float | None]]) -> None:
    """Ingests (event id, external id, type, value) events stamped now, 500 per call."""
    stub = ppb_grpc.ProfileServiceStub(channel(profile_address, "service"))
    now = int(time.time() * 1000)
    messages = []
    for event_id, user, event_type, value in events:
        event = ppb.Event(event_id=event_id, user_id=user, event_type=event_type,
                          timestamp=ts(now))
        if value is not None:
            event.value = value
        messages.append(event)
    for start in range(0, len(messages), 500):
        stub.IngestEvents(ppb.IngestEventsRequest(events=messages[start:start + 500]))


def create_segment(segment_address: str, rule_text: str) -> str:
    stub = spb_grpc.SegmentServiceStub(channel(segment_address, "operator"))
    return stub.CreateSegment(spb.CreateSegmentRequest(segment=spb.Segment(
        display_name="audience", rule_text=rule_text))).segment.name
