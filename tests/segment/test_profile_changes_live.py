"""The closed loop between two live services: a profile change made through the profile
service's API moves a user in or out of a real-time segment without any event."""

from __future__ import annotations

import time

from google.protobuf import field_mask_pb2

from marketing.common.v1 import common_pb2 as cpb
from marketing.profile.v1 import profile_service_pb2 as ppb
from marketing.profile.v1 import profile_service_pb2_grpc as ppb_grpc
from marketing.segment.v1 import segment_service_pb2 as spb
from marketing.segment.v1 import segment_service_pb2_grpc as spb_grpc
from services.common.testing import channel
from tests.delivery.grpc_world import live_suite, seed_users


def live_member(stub, segment: str, user: str, expected: bool, wait_s: float = 20.0) -> bool:
    """The live answer once it equals ``expected`` (the consumer runs on its own thread), or
    the last answer when the wait runs out."""
    deadline = time.monotonic() + wait_s
    while True:
        answer = stub.CheckMembership(spb.CheckMembershipRequest(segment=segment,
                                                                 external_id=user))
        assert answer.live
        if answer.member == expected or time.monotonic() > deadline:
            return answer.member
        time.sleep(0.05)


def test_attribute_and_tag_changes_move_users_through_a_live_segment(tmp_path, redis_url):
    with live_suite(tmp_path, redis_url) as suite:
        profile = suite["profile"]["address"]
        seed_users(profile, 3, city_of=lambda i: "Lyon" if i == 1 else "Paris")
        profiles = ppb_grpc.ProfileServiceStub(channel(profile, "admin"))
        segments = spb_grpc.SegmentServiceStub(channel(suite["segment"]["address"], "operator"))
        name = segments.CreateSegment(spb.CreateSegmentRequest(segment=spb.Segment(
            display_name="Lyon, not vip", rule_text='city == "Lyon" and lacks_tag("vip")',
            realtime=True))).segment.name
        assert live_member(segments, name, "u1", True)
        assert not live_member(segments, name, "u2", False)

        # u2 moves to Lyon: in. u1 becomes vip: out. Neither sends an event.
        profiles.UpdateProfile(ppb.UpdateProfileRequest(
            profile=ppb.Profile(name="profiles/u2",
                                attributes={"city": cpb.Value(string_value="Lyon")}),
            update_mask=field_mask_pb2.FieldMask(paths=["attributes.city"])))
        profiles.AddTags(ppb.AddTagsRequest(name="profiles/u1", tags=[ppb.Tag(tag="vip")]))
        assert live_member(segments, name, "u2", True)
        assert not live_member(segments, name, "u1", False)
        assert not live_member(segments, name, "u3", False)
