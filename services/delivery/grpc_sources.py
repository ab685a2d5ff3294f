"""Production wiring of the read and write interfaces: the profile and segment services over gRPC."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from pyroaring import BitMap

from services.delivery.sources import Contact
from services.delivery.templates import TRAIT_NAMES

_CHANNEL_ENUM = {"push": 1, "sms": 2, "email": 3, "wechat": 4, "in_app": 5, "webhook": 6,
                 "coupon": 7}
BATCH = 1000  # the profile service's PROFILE_MAX_BATCH_ITEMS default
SNAPSHOT_BATCH = 10_000  # the segment service's largest StreamSnapshotMembers batch


def py_value(value) -> Any:
    """A ``marketing.common.v1.Value`` as the Python value it carries (timestamps in ms)."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "string_list_value":
        return list(value.string_list_value.values)
    if kind == "timestamp_value":
        return value.timestamp_value.ToMilliseconds()
    return getattr(value, kind)


def _enum_label(enum_type, number: int, prefix: str) -> str | None:
    """``RFM_GROUP_CHAMPIONS`` -> ``champions``, as the profile store writes it; None when
    unspecified."""
    if number == 0:
        return None
    return enum_type.Name(number).removeprefix(prefix).lower()


class GrpcProfileDirectory:
    """ProfileDirectory over the profile service: one batched RPC per 1,000 users
    (BatchGetContactability, BatchGetProfiles, and BatchGetTraits, which is asked only when a
    template uses traits)."""

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
        ids = list(dict.fromkeys(external_ids))
        for start in range(0, len(ids), BATCH):
            names = [f"profiles/{e}" for e in ids[start:start + BATCH]]
            for user in self._contactability(names=names):
                if user.found:
                    out[user.name.partition("/")[2]] = user.user_id
        return out

    def external_ids(self, user_ids: Sequence[int]) -> dict[int, str]:
        """External ids of internal ids (unknown users are absent), 1,000 per call."""
        out: dict[int, str] = {}
        ids = list(dict.fromkeys(int(u) for u in user_ids))
        for start in range(0, len(ids), BATCH):
            for u in self._contactability(user_ids=ids[start:start + BATCH], channels=[1]):
                if u.found:
                    out[u.user_id] = u.name.partition("/")[2]
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
                out[profile.external_id] = {k: py_value(v) for k, v in profile.attributes.items()
                                            if k in names}
        return out

    def _traits(self, external_ids: Sequence[str], names: set[str]) -> dict[str, dict]:
        pb = self.pb
        out: dict[str, dict] = {}
        ids = list(external_ids)
        for start in range(0, len(ids), BATCH):
            request = pb.BatchGetTraitsRequest(
                names=[f"profiles/{e}" for e in ids[start:start + BATCH]])
            for result in self.stub.BatchGetTraits(request, timeout=self.timeout_s).results:
                if not result.found:  # erased since the audience was taken
                    continue
                t = result.traits
                values = {
                    "recency_days": t.recency_days if t.HasField("recency_days") else None,
                    "frequency": t.frequency, "monetary": t.monetary, "r_score": t.r_score,
                    "f_score": t.f_score, "m_score": t.m_score,
                    "rfm_group": _enum_label(pb.RfmGroup, t.rfm_group, "RFM_GROUP_"),
                    "lifecycle_stage": _enum_label(pb.LifecycleStage, t.lifecycle_stage,
                                                   "LIFECYCLE_STAGE_"),
                }
                out[result.name.partition("/")[2]] = {k: v for k, v in values.items()
                                                      if k in names}
        return out

    def template_attributes(self, user_ids: Sequence[int], names: Iterable[str]
                            ) -> dict[int, dict[str, Any]]:
        wanted = set(names)
        if not wanted:
            return {uid: {} for uid in user_ids}
        external = self.external_ids(user_ids)
        values = self._attributes(list(external.values()), wanted - TRAIT_NAMES)
        traits = wanted & TRAIT_NAMES
        if traits:
            for external_id, found in self._traits(list(external.values()), traits).items():
                values.setdefault(external_id, {}).update(found)
        return {uid: values.get(e, {}) for uid, e in external.items()}

    def attribute_names(self) -> set[str]:
        names, token = set(), ""
        while True:
            response = self.stub.ListAttributes(
                self.pb.ListAttributesRequest(page_size=500, page_token=token),
                timeout=self.timeout_s)
            names.update(a.name.removeprefix("attributes/") for a in response.attributes)
            token = response.next_page_token
            if not token:
                return names


class GrpcConsentWriter:
    """ConsentWriter over the profile service. Withdrawn consents go in one BatchUpdateConsent
    call per 1,000 changes, device flags (notifications off, app uninstalled) in one
    BatchUpdateProfiles call per ``batch_size`` users, each item an update mask naming the
    flag. Everything must succeed (a refused item raises, and the outcome intake keeps the
    changes for its retry pass; repeating a change is harmless), except that a user the
    profile service no longer knows (erased) is done with: there is nobody left to opt out."""

    def __init__(self, channel, timeout_s: float = 10.0, batch_size: int = BATCH):
        from marketing.profile.v1 import profile_service_pb2 as pb
        from marketing.profile.v1 import profile_service_pb2_grpc as pb_grpc

        self.pb = pb
        self.stub = pb_grpc.ProfileServiceStub(channel)
        self.timeout_s = timeout_s
        self.batch_size = batch_size

    @staticmethod
    def _when(ts_ms: int):
        from google.protobuf import timestamp_pb2

        when = timestamp_pb2.Timestamp()
        when.FromMilliseconds(ts_ms)
        return when

    @staticmethod
    def _check(results, what: str) -> None:
        """Raises unless every item was stored or names a user that no longer exists."""
        refused = [r for r in results
                   if r.status.code not in (grpc.StatusCode.OK.value[0],
                                            grpc.StatusCode.NOT_FOUND.value[0])]
        if refused:
            raise RuntimeError(
                f"profile service refused {len(refused)} {what}(s), the first for "
                f"{refused[0].name}: {refused[0].status.message}")

    def _unsubscribe(self, changes) -> None:
        pb = self.pb
        for start in range(0, len(changes), BATCH):
            part = changes[start:start + BATCH]
            request = pb.BatchUpdateConsentRequest(requests=[
                pb.UpdateConsentRequest(name=f"profiles/{c.external_id}", consents=[pb.Consent(
                    channel=_CHANNEL_ENUM.get(c.channel, 0), subscribed=False,
                    source=c.source[:128], update_time=self._when(c.ts_ms))])
                for c in part])
            response = self.stub.BatchUpdateConsent(request, timeout=self.timeout_s)
            self._check(response.results, "consent change")

    def _flag(self, change):
        """The UpdateProfile item setting the device flag a change reports."""
        from google.protobuf import field_mask_pb2

        pb = self.pb
        flag = ("notifications_disabled" if change.kind == "notification_disabled"
                else "app_uninstalled")
        profile = pb.Profile(name=f"profiles/{change.external_id}", **{flag: True})
        return pb.UpdateProfileRequest(profile=profile,
                                       update_mask=field_mask_pb2.FieldMask(paths=[flag]))

    def _flags(self, changes) -> None:
        pb = self.pb
        for start in range(0, len(changes), self.batch_size):
            request = pb.BatchUpdateProfilesRequest(
                requests=[self._flag(c) for c in changes[start:start + self.batch_size]])
            response = self.stub.BatchUpdateProfiles(request, timeout=self.timeout_s)
            self._check(response.results, "device flag")

    def apply(self, changes) -> None:
        todo = [c for c in changes if c.external_id]
        self._unsubscribe([c for c in todo if c.kind == "unsubscribed"])
        self._flags([c for c in todo if c.kind != "unsubscribed"])


class GrpcSegmentSource:
    """AudienceSource over the segment service: a send takes a new versioned snapshot of the
    segment (CreateSnapshot) and streams its members (StreamSnapshotMembers) into a bitmap of
    internal ids."""

    def __init__(self, channel, timeout_s: float = 120.0):
        from marketing.segment.v1 import segment_service_pb2 as pb
        from marketing.segment.v1 import segment_service_pb2_grpc as pb_grpc

        self.pb = pb
        self.stub = pb_grpc.SegmentServiceStub(channel)
        self.timeout_s = timeout_s

    def snapshot(self, segment: str) -> BitMap:
        snap = self.stub.CreateSnapshot(self.pb.CreateSnapshotRequest(parent=segment),
                                        timeout=self.timeout_s).snapshot
        return self.members(snap.name)

    def members(self, snapshot_name: str) -> BitMap:
        """The members of one stored snapshot (``segments/{id}/snapshots/{version}``)."""
        out = BitMap()
        request = self.pb.StreamSnapshotMembersRequest(name=snapshot_name,
                                                       batch_size=SNAPSHOT_BATCH)
        for batch in self.stub.StreamSnapshotMembers(request, timeout=self.timeout_s):
            out.update(m.user_id for m in batch.members)
        return out
