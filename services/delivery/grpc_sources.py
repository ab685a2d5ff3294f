"""Production wiring of the read interfaces: the profile and segment services over gRPC."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pyroaring import BitMap

from services.common.errors import Unavailable
from services.delivery.sources import Contact

_CHANNEL_ENUM = {"push": 1, "sms": 2, "email": 3, "wechat": 4, "in_app": 5, "webhook": 6,
                 "coupon": 7}
BATCH = 1000  # the profile service's PROFILE_MAX_BATCH_ITEMS default


def _value(value) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "string_list_value":
        return list(value.string_list_value.values)
    if kind == "timestamp_value":
        return value.timestamp_value.ToMilliseconds()
    return getattr(value, kind)


class GrpcProfileDirectory:
    """ProfileDirectory over the profile service: one batched RPC per 1,000 users."""

    def __init__(self, channel, timeout_s: float = 10.0):
        from marketing.profile.v1 import profile_service_pb2 as pb
        from marketing.profile.v1 import profile_service_pb2_grpc as pb_grpc

        self.pb = pb
        self.stub = pb_grpc.ProfileServiceStub(channel)
        self.timeout_s = timeout_s

    def _contactability(self, names=(), user_ids=(), channels=()):
        request = self.pb.BatchGetContactabilityRequest(
            names=list(names), user_ids=list(user_ids), channels=list(channels))
        return self.stub.BatchGetContactability(request, timeout=self.timeout_s).users

    def resolve(self, external_ids: Sequence[str]) -> dict[str, int]:
        out = {}
        ids = list(external_ids)
        for start in range(0, len(ids), BATCH):
            names = [f"profiles/{e}" for e in ids[start:start + BATCH]]
            for user in self._contactability(names=names):
                if user.found:
                    out[user.name.partition("/")[2]] = user.user_id
        return out

    def contactability(self, user_ids: Sequence[int], channel: str) -> dict[int, Contact]:
        enum = _CHANNEL_ENUM[channel]
        out: dict[int, Contact] = {}
        ids = list(user_ids)
        for start in range(0, len(ids), BATCH):
            users = self._contactability(user_ids=ids[start:start + BATCH], channels=[enum])
            for u in users:
                if not u.found:
                    continue
                consent = next((c for c in u.consents if c.channel == enum), None)
                quiet = u.quiet_hours if u.HasField("quiet_hours") else None
                out[u.user_id] = Contact(
                    user_id=u.user_id, external_id=u.name.partition("/")[2],
                    time_zone=u.time_zone or "UTC",
                    quiet_start_minute=quiet.start_minute if quiet else None,
                    quiet_end_minute=quiet.end_minute if quiet else None,
                    notifications_disabled=u.notifications_disabled,
                    app_uninstalled=u.app_uninstalled,
                    consent=None if consent is None or consent.defaulted else consent.subscribed,
                )
        if channel in ("email", "sms") and out:
            attr = "email" if channel == "email" else "phone"
            values = self._attributes([c.external_id for c in out.values()], {attr})
            out = {uid: Contact(**{**c.__dict__, "address": str(values.get(c.external_id, {})
                                                                 .get(attr) or "")})
                   for uid, c in out.items()}
        return out

    def _attributes(self, external_ids: Sequence[str], names: set[str]) -> dict[str, dict]:
        out = {}
        for start in range(0, len(external_ids), BATCH):
            request = self.pb.BatchGetProfilesRequest(
                names=[f"profiles/{e}" for e in external_ids[start:start + BATCH]])
            for profile in self.stub.BatchGetProfiles(request, timeout=self.timeout_s).profiles:
                out[profile.external_id] = {k: _value(v) for k, v in profile.attributes.items()
                                            if k in names}
        return out

    def template_attributes(self, user_ids: Sequence[int], names: Iterable[str]
                            ) -> dict[int, dict[str, Any]]:
        wanted = set(names)
        if not wanted:
            return {uid: {} for uid in user_ids}
        contacts = self.contactability(user_ids, "push")
        by_external = self._attributes([c.external_id for c in contacts.values()], wanted)
        return {uid: by_external.get(c.external_id, {}) for uid, c in contacts.items()}

    def attribute_names(self) -> set[str]:
        names, token = set(), ""
        while True:
            response = self.stub.ListAttributes(
                self.pb.ListAttributesRequest(page_size=500, page_token=token),
                timeout=self.timeout_s)
            names.update(a.name for a in response.attributes)
            token = response.next_page_token
            if not token:
                return names


class GrpcSegmentSource:
    """AudienceSource over the segment service's snapshot RPC."""

    def __init__(self, channel, timeout_s: float = 60.0):
        self.channel = channel
        self.timeout_s = timeout_s

    def snapshot(self, segment: str) -> BitMap:
        try:
            from marketing.segment.v1 import segment_service_pb2 as pb
            from marketing.segment.v1 import segment_service_pb2_grpc as pb_grpc
        except ImportError as exc:
            raise Unavailable("the segment service contract is not available") from exc
        stub = pb_grpc.SegmentServiceStub(self.channel)
        request_type = getattr(pb, "GetSegmentSnapshotRequest", None)
        if request_type is None:
            raise Unavailable("the segment service has no snapshot RPC")
        response = stub.GetSegmentSnapshot(request_type(name=segment), timeout=self.timeout_s)
        return BitMap.deserialize(response.bitmap)
