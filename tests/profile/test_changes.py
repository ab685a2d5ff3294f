"""profile:changes over gRPC: each mutating call announces exactly the users it changed, with
what changed of each, and nothing when it changed nothing (SQLite and PostgreSQL, real Redis)."""

from __future__ import annotations

import contextlib
import time

import pytest
import redis
from google.protobuf import field_mask_pb2, timestamp_pb2

from marketing.common.v1 import common_pb2
from marketing.profile.v1 import profile_service_pb2 as pb
from marketing.profile.v1 import profile_service_pb2_grpc as pb_grpc
from services.common.testing import channel, running_server, service_settings
from services.profile.config import ProfileConfig
from services.profile.core import CHANGES_STREAM, EVENTS_STREAM
from services.profile.servicer import build


def ts(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def number(value: float) -> common_pb2.Value:
    return common_pb2.Value(number_value=value)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'profile.db'}"
    return request.getfixturevalue("pg_url")


class Changes:
    """Reads the profile:changes entries added since the last read."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self.last = "0-0"

    def new(self) -> dict[str, str]:
        """external id -> kinds of the entries since the last call (each user at most once
        per call in these tests, which the assertion on the count checks)."""
        entries = self.client.xrange(CHANGES_STREAM, f"({self.last}", "+")
        if entries:
            self.last = entries[-1][0]
        found = {fields["external_id"]: fields["kinds"] for _, fields in entries}
        assert len(found) == len(entries), entries
        for _, fields in entries:
            assert int(fields["user_id"]) > 0 and int(fields["ts_ms"]) > 0
        return found


@pytest.fixture
def service(tmp_path, redis_url, database_url):
    """A profile server (maintenance off, background traits off), a service-role stub and a
    reader of its profile:changes."""
    settings = service_settings("profile", tmp_path, redis_url=redis_url, database_url=database_url)
    config = ProfileConfig(maintenance_interval_s=0, full_recompute_interval_s=0)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with contextlib.ExitStack() as stack:
        _server, address = stack.enter_context(running_server(settings, build(settings, config)))
        stub = pb_grpc.ProfileServiceStub(stack.enter_context(channel(address, "admin")))
        stub.CreateAttribute(pb.CreateAttributeRequest(attribute=pb.Attribute(
            name="attributes/age", value_type=common_pb2.VALUE_TYPE_NUMBER)))
        yield stub, Changes(client)
    client.close()


def _update(name: str, paths: list[str], **fields) -> pb.UpdateProfileRequest:
    return pb.UpdateProfileRequest(profile=pb.Profile(name=name, **fields),
                                   update_mask=field_mask_pb2.FieldMask(paths=paths))


def test_create_and_update_profile_announce_attributes_and_tags_they_changed(service):
    stub, changes = service
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(
        external_id="u1", attributes={"age": number(30)}, tags=[pb.Tag(tag="vip")])))
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="u2")))
    assert changes.new() == {"u1": "created,attributes,tags", "u2": "created"}

    stub.UpdateProfile(_update("profiles/u1", ["attributes.age"], attributes={"age": number(31)}))
    assert changes.new() == {"u1": "attributes"}
    # The same value again, a field no rule reads, a tag set that is already the user's:
    # nothing changed that a rule sees.
    stub.UpdateProfile(_update("profiles/u1", ["attributes.age"], attributes={"age": number(31)}))
    stub.UpdateProfile(_update("profiles/u1", ["notifications_disabled", "time_zone"],
                               notifications_disabled=True, time_zone="Europe/Paris"))
    stub.UpdateProfile(_update("profiles/u1", ["tags"], tags=[pb.Tag(tag="vip")]))
    stub.UpdateProfile(_update("profiles/u1", ["attributes"], attributes={"age": number(31)}))
    assert changes.new() == {}
    # Clearing an attribute, and replacing the attribute set with an empty one.
    stub.UpdateProfile(_update("profiles/u1", ["attributes.age"]))
    assert changes.new() == {"u1": "attributes"}
    stub.UpdateProfile(_update("profiles/u1", ["attributes.age"]))
    stub.UpdateProfile(_update("profiles/u2", ["attributes"]))
    assert changes.new() == {}


def test_batch_update_profiles_announces_each_user_it_changed_once(service):
    stub, changes = service
    for user, age in (("b1", 20), ("b2", 20), ("b3", 20)):
        stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(
            external_id=user, attributes={"age": number(age)})))
    changes.new()
    answer = stub.BatchUpdateProfiles(pb.BatchUpdateProfilesRequest(requests=[
        _update("profiles/b1", ["attributes.age"], attributes={"age": number(21)}),
        _update("profiles/b1", ["tags"], tags=[pb.Tag(tag="gold")]),
        _update("profiles/b2", ["attributes.age"], attributes={"age": number(20)}),  # as it is
        _update("profiles/b3", ["app_uninstalled"], app_uninstalled=True),  # read by no rule
        _update("profiles/nobody", ["attributes.age"], attributes={"age": number(1)}),
        _update("profiles/b2", ["tags"], tags=[pb.Tag(tag="vip")]),
    ]))
    assert answer.updated_count == 5
    assert changes.new() == {"b1": "attributes,tags", "b2": "tags"}


def test_add_and_remove_tags_announce_only_real_changes(service):
    stub, changes = service
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="t1")))
    changes.new()
    stub.AddTags(pb.AddTagsRequest(name="profiles/t1", tags=[pb.Tag(tag="vip")]))
    assert changes.new() == {"t1": "tags"}
    stub.AddTags(pb.AddTagsRequest(name="profiles/t1", tags=[pb.Tag(tag="vip")]))
    assert changes.new() == {}
    stub.RemoveTags(pb.RemoveTagsRequest(name="profiles/t1", tags=["vip"]))
    assert changes.new() == {"t1": "tags"}
    stub.RemoveTags(pb.RemoveTagsRequest(name="profiles/t1", tags=["vip", "never"]))
    assert changes.new() == {}


def test_consent_updates_announce_consent(service):
    stub, changes = service
    for user in ("c1", "c2"):
        stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id=user)))
    changes.new()
    at = ts(int(time.time() * 1000) - 60_000)

    def consent(subscribed: bool, when=at) -> pb.Consent:
        return pb.Consent(channel=common_pb2.CHANNEL_EMAIL, subscribed=subscribed, source="form",
                          update_time=when)

    stub.UpdateConsent(pb.UpdateConsentRequest(name="profiles/c1", consents=[consent(True)]))
    assert changes.new() == {"c1": "consent"}
    stub.UpdateConsent(pb.UpdateConsentRequest(name="profiles/c1", consents=[consent(True)]))
    assert changes.new() == {}
    older = ts(int(time.time() * 1000) - 120_000)
    stub.BatchUpdateConsent(pb.BatchUpdateConsentRequest(requests=[
        pb.UpdateConsentRequest(name="profiles/c1", consents=[consent(False, older)]),  # loses
        pb.UpdateConsentRequest(name="profiles/c2", consents=[consent(False)]),
    ]))
    assert changes.new() == {"c2": "consent"}


def test_write_scores_announces_users_whose_scores_changed(service):
    stub, changes = service
    ids = {}
    for user in ("s1", "s2"):
        ids[user] = stub.CreateProfile(pb.CreateProfileRequest(
            profile=pb.Profile(external_id=user))).profile.user_id
    changes.new()
    at = ts(int(time.time() * 1000) - 1000)
    first = [pb.ModelScore(external_id="s1", model_name="churn", score=0.5, model_version="1",
                           score_time=at),
             pb.ModelScore(user_id=ids["s2"], model_name="churn", score=0.1, model_version="1",
                           score_time=at)]
    assert stub.WriteScores(pb.WriteScoresRequest(scores=first)).written_count == 2
    assert changes.new() == {"s1": "scores", "s2": "scores"}
    stub.WriteScores(pb.WriteScoresRequest(scores=first))  # the same scores again
    assert changes.new() == {}
    first[1].score = 0.9
    stub.WriteScores(pb.WriteScoresRequest(scores=first))
    assert changes.new() == {"s2": "scores"}


def test_trait_recomputation_announces_users_whose_traits_changed(service, redis_url):
    stub, changes = service
    now = int(time.time() * 1000)
    stub.IngestEvents(pb.IngestEventsRequest(events=[
        pb.Event(event_id=f"r{i}", user_id=user, event_type="purchase", timestamp=ts(now - i),
                 value=10.0 * (i + 1))
        for i, user in enumerate(["r1", "r2", "r2"])
    ]))
    # Traits refreshed with the events are announced by the events themselves.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.xlen(EVENTS_STREAM) == 3
    client.close()
    assert changes.new() == {}
    stub.RecomputeTraits(pb.RecomputeTraitsRequest(names=["profiles/r1"]))
    assert changes.new() == {}  # nothing new about r1
    # The first full recompute scores every purchaser against the population.
    assert stub.RecomputeTraits(pb.RecomputeTraitsRequest()).full
    assert changes.new() == {"r1": "traits", "r2": "traits"}
    stub.RecomputeTraits(pb.RecomputeTraitsRequest())
    assert changes.new() == {}


def test_merge_identity_announces_the_known_user_with_what_moved(service):
    stub, changes = service
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="known")))
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(
        external_id="anon-1", tags=[pb.Tag(tag="visitor")])))
    stub.IngestEvents(pb.IngestEventsRequest(events=[pb.Event(
        event_id="m1", user_id="anon-1", event_type="view",
        timestamp=ts(int(time.time() * 1000)))]))
    changes.new()
    stub.MergeIdentity(pb.MergeIdentityRequest(name="profiles/known", anonymous_id="anon-1"))
    assert changes.new() == {"known": "tags,traits,identity"}
    stub.MergeIdentity(pb.MergeIdentityRequest(name="profiles/known", anonymous_id="anon-1"))
    assert changes.new() == {}
    stub.MergeIdentity(pb.MergeIdentityRequest(name="profiles/known", anonymous_id="device-9"))
    assert changes.new() == {"known": "identity"}
