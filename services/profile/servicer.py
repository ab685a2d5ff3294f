"""gRPC surface of the profile service: translates protos to domain calls and back."""

from __future__ import annotations

import base64
import json
import logging
import threading

from google.protobuf import timestamp_pb2
from google.rpc import code_pb2, status_pb2

from marketing.common.v1 import common_pb2
from marketing.profile.v1 import profile_service_pb2 as pb
from marketing.profile.v1 import profile_service_pb2_grpc as pb_grpc
from services.common.auth import ADMIN, OPERATOR, READERS, SERVICE, WRITERS, current_principal
from services.common.config import Settings
from services.common.db import make_engine, migrate
from services.common.errors import InvalidArgument, NotFound, ServiceError
from services.common.redis_client import connect_redis
from services.common.server import ServiceDefinition
from services.profile import traits
from services.profile.config import ProfileConfig
from services.profile.core import EventIn, Profile, ProfileCore, ScoreIn

log = logging.getLogger(__name__)

FULL_NAME = "marketing.profile.v1.ProfileService"

ROLES: dict[str, frozenset[str]] = {
    "GetProfile": READERS,
    "BatchGetProfiles": READERS,
    "ListProfiles": READERS,
    "GetAttribute": READERS,
    "ListAttributes": READERS,
    "ListEvents": READERS,
    "GetTraits": READERS,
    "BatchGetTraits": READERS,
    "GetConsent": READERS,
    "BatchGetContactability": READERS,
    "CreateProfile": WRITERS,
    "UpdateProfile": WRITERS,
    "BatchUpdateProfiles": WRITERS,
    "MergeIdentity": WRITERS,
    "AddTags": WRITERS,
    "RemoveTags": WRITERS,
    "IngestEvents": WRITERS,
    "StreamEvents": WRITERS,
    "UpdateConsent": WRITERS,
    "BatchUpdateConsent": WRITERS,
    "RecomputeTraits": WRITERS,
    "CreateAttribute": frozenset({OPERATOR, ADMIN}),
    "UpdateAttribute": frozenset({OPERATOR, ADMIN}),
    "DeleteProfile": frozenset({OPERATOR, ADMIN}),
    # Deleting an attribute drops every user's value of it: schema changes are the admin's.
    "DeleteAttribute": frozenset({ADMIN}),
    "WriteScores": frozenset({SERVICE, ADMIN}),
    "EraseUser": frozenset({ADMIN}),
}

_KIND_TO_TYPE = {
    "string_value": "string",
    "number_value": "number",
    "bool_value": "bool",
    "timestamp_value": "timestamp",
    "string_list_value": "string_list",
}
_VALUE_TYPE_TO_NAME = {
    common_pb2.VALUE_TYPE_STRING: "string",
    common_pb2.VALUE_TYPE_NUMBER: "number",
    common_pb2.VALUE_TYPE_BOOL: "bool",
    common_pb2.VALUE_TYPE_TIMESTAMP: "timestamp",
    common_pb2.VALUE_TYPE_STRING_LIST: "string_list",
}
_NAME_TO_VALUE_TYPE = {v: k for k, v in _VALUE_TYPE_TO_NAME.items()}
_CHANNEL_TO_NAME = {
    common_pb2.CHANNEL_PUSH: "push",
    common_pb2.CHANNEL_SMS: "sms",
    common_pb2.CHANNEL_EMAIL: "email",
    common_pb2.CHANNEL_WECHAT: "wechat",
    common_pb2.CHANNEL_IN_APP: "in_app",
    common_pb2.CHANNEL_WEBHOOK: "webhook",
    common_pb2.CHANNEL_COUPON: "coupon",
}
_NAME_TO_CHANNEL = {v: k for k, v in _CHANNEL_TO_NAME.items()}
_STAGES = {
    "new": pb.LIFECYCLE_STAGE_NEW,
    "active": pb.LIFECYCLE_STAGE_ACTIVE,
    "dormant": pb.LIFECYCLE_STAGE_DORMANT,
    "churned": pb.LIFECYCLE_STAGE_CHURNED,
}
_STAGE_NAMES = {v: k for k, v in _STAGES.items()}
_GROUPS = {name: pb.RfmGroup.Value(f"RFM_GROUP_{name.upper()}") for name in traits.RFM_GROUPS}
_GROUP_NAMES = {v: k for k, v in _GROUPS.items()}


# --- conversions ---------------------------------------------------------------------------


def ts_ms(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def to_ts(ms: int | None) -> timestamp_pb2.Timestamp | None:
    if ms is None:
        return None
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def value_in(value: common_pb2.Value) -> tuple[str | None, object]:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None, None
    if kind == "timestamp_value":
        return "timestamp", ts_ms(value.timestamp_value)
    if kind == "string_list_value":
        return "string_list", list(value.string_list_value.values)
    return _KIND_TO_TYPE[kind], getattr(value, kind)


def value_out(kind: str, value) -> common_pb2.Value:
    if value is None:
        return common_pb2.Value()
    if kind == "timestamp":
        return common_pb2.Value(timestamp_value=to_ts(int(value)))
    if kind == "string_list":
        return common_pb2.Value(string_list_value=common_pb2.StringList(values=list(value)))
    if kind == "number":
        return common_pb2.Value(number_value=float(value))
    if kind == "bool":
        return common_pb2.Value(bool_value=bool(value))
    return common_pb2.Value(string_value=str(value))


def profile_id(name: str, field: str = "name") -> str:
    """The external id in ``profiles/{external_id}``."""
    if not name.startswith("profiles/") or len(name) <= len("profiles/"):
        raise InvalidArgument(field, "must be profiles/{external_id}")
    return name[len("profiles/"):]


def attribute_id(name: str, field: str = "name") -> str:
    if not name.startswith("attributes/") or len(name) <= len("attributes/"):
        raise InvalidArgument(field, "must be attributes/{attribute}")
    return name[len("attributes/"):]


def _set_value(target: common_pb2.Value, kind: str, value) -> None:
    """Writes a stored value into a message's Value in place (what ``value_out`` returns,
    without building a message to copy: a batch read writes thousands of them)."""
    if value is None:
        return
    if kind == "number":
        target.number_value = float(value)
    elif kind == "string":
        target.string_value = str(value)
    elif kind == "timestamp":
        target.timestamp_value.FromMilliseconds(int(value))
    elif kind == "bool":
        target.bool_value = bool(value)
    elif kind == "string_list":
        target.string_list_value.values.extend(value)
    else:
        target.CopyFrom(value_out(kind, value))


def profile_out(profile: Profile) -> pb.Profile:
    return fill_profile(pb.Profile(), profile)


def fill_profile(out: pb.Profile, profile: Profile) -> pb.Profile:
    """Writes ``profile`` into ``out`` (a fresh message, or one just added to a response's
    repeated field: building a message and then adding it would copy it)."""
    out.name = f"profiles/{profile.external_id}"
    out.external_id = profile.external_id
    out.user_id = profile.user_id
    out.time_zone = profile.time_zone
    out.notifications_disabled = profile.notifications_disabled
    out.app_uninstalled = profile.app_uninstalled
    out.create_time.FromMilliseconds(profile.created_ms)
    out.update_time.FromMilliseconds(profile.updated_ms)
    attributes = out.attributes
    for name, (kind, value) in profile.attributes.items():
        _set_value(attributes[name], kind, value)
    for tag, expires in profile.tags:
        out.tags.add(tag=tag, expire_time=to_ts(expires))
    if profile.quiet_start_minute is not None:
        out.quiet_hours.start_minute = profile.quiet_start_minute
        out.quiet_hours.end_minute = profile.quiet_end_minute
    return out


def profile_in(message: pb.Profile, external_id: str) -> Profile:
    quiet = message.HasField("quiet_hours")
    return Profile(
        external_id=external_id,
        time_zone=message.time_zone or "UTC",
        quiet_start_minute=message.quiet_hours.start_minute if quiet else None,
        quiet_end_minute=message.quiet_hours.end_minute if quiet else None,
        notifications_disabled=message.notifications_disabled,
        app_uninstalled=message.app_uninstalled,
        attributes={k: value_in(v) for k, v in message.attributes.items()},
        tags=[
            (t.tag, ts_ms(t.expire_time) if t.HasField("expire_time") else None)
            for t in message.tags
        ],
    )


def update_patch(request: pb.UpdateProfileRequest) -> Profile:
    """The patch of an UpdateProfile request; its profile is named by `name` or `external_id`."""
    if request.profile.name:
        external_id = profile_id(request.profile.name, "profile.name")
    elif request.profile.external_id:
        external_id = request.profile.external_id
    else:
        raise InvalidArgument("profile.name", "say which profile to update")
    return profile_in(request.profile, external_id)


def update_name(request: pb.UpdateProfileRequest) -> str:
    """The profile an UpdateProfile request names, as a batch result reports it."""
    if request.profile.name or not request.profile.external_id:
        return request.profile.name
    return f"profiles/{request.profile.external_id}"


def event_in(event: pb.Event) -> EventIn:
    return EventIn(
        event_id=event.event_id,
        external_id=event.user_id,
        event_type=event.event_type,
        ts_ms=ts_ms(event.timestamp) if event.HasField("timestamp") else None,
        value=event.value if event.HasField("value") else None,
        properties={k: value_in(v) for k, v in event.properties.items()} if event.properties else {},
    )


def attribute_out(row: dict) -> pb.Attribute:
    return pb.Attribute(
        name=f"attributes/{row['name']}",
        value_type=_NAME_TO_VALUE_TYPE[row["value_type"]],
        description=row["description"],
        pii=bool(row["pii"]),
        create_time=to_ts(row["created_ms"]),
    )


def consent_out(channel: str, state: tuple[bool, int | None, str]) -> pb.Consent:
    subscribed, at_ms, source = state
    return pb.Consent(
        channel=_NAME_TO_CHANNEL[channel],
        subscribed=subscribed,
        source=source,
        update_time=to_ts(at_ms),
        defaulted=at_ms is None,
    )


def consent_changes(request: pb.UpdateConsentRequest) -> list[tuple[str, bool, str, int | None]]:
    """(channel, subscribed, source, time) per consent of an UpdateConsent request."""
    return [
        (
            _CHANNEL_TO_NAME.get(c.channel, ""),
            c.subscribed,
            c.source,
            ts_ms(c.update_time) if c.HasField("update_time") else None,
        )
        for c in request.consents
    ]


def encode_token(cursor: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"c": cursor}).encode()).decode()


def decode_token(token: str) -> int | None:
    if not token:
        return None
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["c"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token", "is not a token this service issued") from None


def traits_out(name: str, data: dict) -> pb.Traits:
    """The Traits message of one user as the core returns them."""
    out = pb.Traits(name=name, user_id=data["user_id"])
    row = data["traits"]
    if row:
        if row["recency_days"] is not None:
            out.recency_days = row["recency_days"]
        out.frequency = row["frequency"]
        out.monetary = row["monetary"]
        out.r_score = row["r_score"] or 0
        out.f_score = row["f_score"] or 0
        out.m_score = row["m_score"] or 0
        out.rfm_group = _GROUPS.get(row["rfm_group"], pb.RFM_GROUP_UNSPECIFIED)
        out.lifecycle_stage = _STAGES.get(row["lifecycle_stage"], pb.LIFECYCLE_STAGE_UNSPECIFIED)
        for field, key in (
            ("first_seen_time", "first_seen_ms"),
            ("last_seen_time", "last_seen_ms"),
            ("last_purchase_time", "last_purchase_ms"),
            ("as_of_time", "as_of_ms"),
            ("update_time", "updated_ms"),
        ):
            if row[key] is not None:
                getattr(out, field).CopyFrom(to_ts(row[key]))
    for c in data["event_counts"]:
        out.event_counts.add(
            event_type=c["event_type"], count_7d=c["count_7d"], count_30d=c["count_30d"],
            count_90d=c["count_90d"], count_total=c["count_total"],
        )
    for s in data["scores"]:
        out.scores.add(
            user_id=data["user_id"], external_id=data["external_id"], model_name=s["model_name"],
            score=s["score"], model_version=s["model_version"], score_time=to_ts(s["scored_ms"]),
        )
    return out


def item_status(error: ServiceError | None) -> status_pb2.Status:
    return error.to_status() if error is not None else status_pb2.Status(code=code_pb2.OK)


# --- the servicer ----------------------------------------------------------------------------



def _enum_name(names: dict, number: int, field: str) -> str:
    """The domain name of an enum value; numbers this server does not know are refused."""
    try:
        return names[number]
    except KeyError:
        raise InvalidArgument(field, f"unknown value {number}") from None

class ProfileServicer(pb_grpc.ProfileServiceServicer):
    """Thin translation layer over ProfileCore; every rule lives in the core."""

    def __init__(self, core: ProfileCore):
        self.core = core

    # profiles

    def CreateProfile(self, request, context):
        external_id = request.profile.external_id or (
            profile_id(request.profile.name, "profile.name") if request.profile.name else ""
        )
        created = self.core.create_profile(profile_in(request.profile, external_id))
        return pb.CreateProfileResponse(profile=profile_out(created))

    def GetProfile(self, request, context):
        response = pb.GetProfileResponse()
        fill_profile(response.profile, self.core.get_profile(profile_id(request.name)))
        return response

    def BatchGetProfiles(self, request, context):
        if not request.names:
            raise InvalidArgument("names", "name at least one profile")
        ids = [profile_id(n, f"names[{i}]") for i, n in enumerate(request.names)]
        found = self.core.batch_get_profiles(ids)
        response = pb.BatchGetProfilesResponse()
        add = response.profiles.add
        for profile in found:
            fill_profile(add(), profile)
        return response

    def UpdateProfile(self, request, context):
        updated = self.core.update_profile(update_patch(request), list(request.update_mask.paths))
        return pb.UpdateProfileResponse(profile=profile_out(updated))

    def BatchUpdateProfiles(self, request, context):
        items: list[tuple[Profile | ServiceError, list[str]]] = []
        for item in request.requests:
            try:
                patch: Profile | ServiceError = update_patch(item)
            except ServiceError as error:
                patch = error
            items.append((patch, list(item.update_mask.paths)))
        errors = self.core.batch_update_profiles(items)
        response = pb.BatchUpdateProfilesResponse(
            updated_count=sum(1 for e in errors if e is None))
        add = response.results.add
        for i, (item, error) in enumerate(zip(request.requests, errors)):
            add(index=i, name=update_name(item), status=item_status(error))
        return response

    def ListProfiles(self, request, context):
        filters: dict = {"tag": request.tag}
        if request.rfm_group:
            filters["rfm_group"] = _enum_name(_GROUP_NAMES, request.rfm_group, "rfm_group")
        if request.lifecycle_stage:
            filters["lifecycle_stage"] = _enum_name(_STAGE_NAMES, request.lifecycle_stage,
                                                    "lifecycle_stage")
        if request.HasField("attribute_equals"):
            kind, value = value_in(request.attribute_equals.value)
            if kind is None:
                raise InvalidArgument("attribute_equals.value", "set a value")
            filters["attribute"] = (request.attribute_equals.attribute, (kind, value))
        if request.HasField("created_after"):
            filters["created_after_ms"] = ts_ms(request.created_after)
        after = decode_token(request.page_token) or 0
        page, next_cursor = self.core.list_profiles(request.page_size, after, filters)
        return pb.ListProfilesResponse(
            profiles=[profile_out(p) for p in page],
            next_page_token=encode_token(next_cursor) if next_cursor is not None else "",
        )

    def DeleteProfile(self, request, context):
        self.core.delete_profile(profile_id(request.name))
        return pb.DeleteProfileResponse()

    def MergeIdentity(self, request, context):
        merged, existed = self.core.merge_identity(request.anonymous_id, profile_id(request.name))
        return pb.MergeIdentityResponse(profile=profile_out(merged), anonymous_profile_merged=existed)

    # attribute catalogue

    def CreateAttribute(self, request, context):
        attribute = request.attribute
        name = attribute_id(attribute.name, "attribute.name")
        row = self.core.create_attribute(
            name,
            _VALUE_TYPE_TO_NAME.get(attribute.value_type, ""),
            attribute.description,
            attribute.pii,
        )
        return pb.CreateAttributeResponse(attribute=attribute_out(row))

    def GetAttribute(self, request, context):
        row = self.core.get_attribute(attribute_id(request.name))
        return pb.GetAttributeResponse(attribute=attribute_out(row))

    def ListAttributes(self, request, context):
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or 100, 1000)
        start = decode_token(request.page_token) or 0
        rows = self.core.list_attributes()
        page = rows[start : start + size]
        more = start + size < len(rows)
        return pb.ListAttributesResponse(
            attributes=[attribute_out(r) for r in page],
            next_page_token=encode_token(start + size) if more else "",
        )

    def UpdateAttribute(self, request, context):
        name = attribute_id(request.attribute.name, "attribute.name")
        paths = set(request.update_mask.paths)
        if not paths or paths - {"description", "pii"}:
            raise InvalidArgument("update_mask", "name description and/or pii")
        row = self.core.update_attribute(
            name,
            request.attribute.description if "description" in paths else None,
            request.attribute.pii if "pii" in paths else None,
        )
        return pb.UpdateAttributeResponse(attribute=attribute_out(row))

    def DeleteAttribute(self, request, context):
        removed = self.core.delete_attribute(attribute_id(request.name))
        return pb.DeleteAttributeResponse(deleted_value_count=removed)

    # tags

    def AddTags(self, request, context):
        tags = [
            (t.tag, ts_ms(t.expire_time) if t.HasField("expire_time") else None)
            for t in request.tags
        ]
        return pb.AddTagsResponse(profile=profile_out(self.core.add_tags(profile_id(request.name), tags)))

    def RemoveTags(self, request, context):
        profile = self.core.remove_tags(profile_id(request.name), list(request.tags))
        return pb.RemoveTagsResponse(profile=profile_out(profile))

    # events

    def IngestEvents(self, request, context):
        self.core.check_batch_size(len(request.events))
        result = self.core.ingest_events([event_in(e) for e in request.events])
        response = pb.IngestEventsResponse(
            accepted_count=result.accepted,
            duplicate_count=result.duplicates,
            rejected_count=result.rejected,
        )
        for outcome in result.outcomes:
            response.results.add(
                index=outcome.index,
                event_id=outcome.event_id,
                outcome=(
                    pb.EVENT_OUTCOME_REJECTED if outcome.error is not None
                    else pb.EVENT_OUTCOME_DUPLICATE if outcome.duplicate
                    else pb.EVENT_OUTCOME_STORED
                ),
                status=item_status(outcome.error),
            )
        return response

    def StreamEvents(self, request_iterator, context):
        core = self.core
        refuse_unknown = core.config.unknown_user == "refuse"
        stream = core.open_stream()
        messages = 0
        checker = None
        iterator = iter(request_iterator)
        try:
            while True:
                try:
                    request = next(iterator)
                except StopIteration:
                    break
                except InvalidArgument as exc:
                    # The message's bytes did not parse: name it by its position.
                    raise InvalidArgument(f"messages[{messages}]", exc.violations[0][1]) from None
                prefix = f"messages[{messages}].events"
                core.check_batch_size(len(request.events), prefix)
                now = core.now_ms()
                if checker is None:
                    checker = core.event_checker(now, event_in)
                else:
                    checker.at(now)
                batch = checker.columns(request.events, prefix)
                if refuse_unknown:
                    unknown = set(core.unknown_users(batch.external_ids))
                    for i, external_id in enumerate(batch.external_ids):
                        if external_id in unknown:
                            raise NotFound(
                                "profile",
                                f"profiles/{external_id}",
                                f"{prefix}[{i}].user_id: unknown user {external_id!r}",
                            )
                stream.add(batch)
                messages += 1
        finally:
            # Whatever ended the stream, the messages accepted before it are committed and
            # announced before the call answers.
            accepted, duplicates = stream.finish()
        return pb.StreamEventsResponse(
            accepted_count=accepted,
            duplicate_count=duplicates,
            message_count=messages,
        )

    def ListEvents(self, request, context):
        rows, next_cursor = self.core.list_events(
            profile_id(request.parent, "parent"),
            event_type=request.event_type,
            start_ms=ts_ms(request.start_time) if request.HasField("start_time") else None,
            end_ms=ts_ms(request.end_time) if request.HasField("end_time") else None,
            page_size=request.page_size,
            before_row_id=decode_token(request.page_token),
        )
        external_id = profile_id(request.parent, "parent")
        response = pb.ListEventsResponse(
            next_page_token=encode_token(next_cursor) if next_cursor is not None else ""
        )
        for row in rows:
            event = response.events.add(
                event_id=row["event_id"],
                user_id=external_id,
                event_type=row["event_type"],
                timestamp=to_ts(row["ts_ms"]),
            )
            if row["value"] is not None:
                event.value = row["value"]
            for key, raw in (row["properties"] or {}).items():
                event.properties[key].CopyFrom(_json_value_out(raw))
        return response

    # traits and scores

    def GetTraits(self, request, context):
        return pb.GetTraitsResponse(
            traits=traits_out(request.name, self.core.get_traits(profile_id(request.name))))

    def BatchGetTraits(self, request, context):
        if not request.names:
            raise InvalidArgument("names", "name at least one profile")
        ids = [profile_id(n, f"names[{i}]") for i, n in enumerate(request.names)]
        response = pb.BatchGetTraitsResponse()
        for name, data in zip(request.names, self.core.batch_get_traits(ids)):
            item = response.results.add(name=name, found=data is not None)
            if data is not None:
                item.traits.CopyFrom(traits_out(name, data))
        return response

    def RecomputeTraits(self, request, context):
        names = [profile_id(n, f"names[{i}]") for i, n in enumerate(request.names)]
        as_of = ts_ms(request.as_of_time) if request.HasField("as_of_time") else None
        summary = self.core.recompute_traits(as_of, names)
        return pb.RecomputeTraitsResponse(
            user_count=summary["users"],
            population=summary.get("population", 0),
            full=summary["full"],
            as_of_time=to_ts(summary["as_of_ms"]),
        )

    def WriteScores(self, request, context):
        items = [
            ScoreIn(
                model_name=s.model_name,
                score=s.score,
                model_version=s.model_version,
                user_id=s.user_id,
                external_id=s.external_id,
                scored_ms=ts_ms(s.score_time) if s.HasField("score_time") else None,
            )
            for s in request.scores
        ]
        errors = self.core.write_scores(items)
        response = pb.WriteScoresResponse(written_count=sum(1 for e in errors if e is None))
        for i, error in enumerate(errors):
            if error is not None:
                response.results.add(index=i, status=item_status(error))
        return response

    # consent

    def GetConsent(self, request, context):
        states = self.core.get_consents(profile_id(request.name))
        return pb.GetConsentResponse(consents=[consent_out(c, s) for c, s in states.items()])

    def UpdateConsent(self, request, context):
        states = self.core.update_consents(profile_id(request.name), consent_changes(request))
        return pb.UpdateConsentResponse(consents=[consent_out(c, s) for c, s in states.items()])

    def BatchUpdateConsent(self, request, context):
        items = []
        for i, item in enumerate(request.requests):
            try:
                external_id: str | ServiceError = profile_id(item.name, f"requests[{i}].name")
            except ServiceError as error:
                external_id = error
            items.append((external_id, consent_changes(item)))
        errors = self.core.batch_update_consents(items)
        response = pb.BatchUpdateConsentResponse(
            updated_count=sum(1 for e in errors if e is None))
        for i, (item, error) in enumerate(zip(request.requests, errors)):
            response.results.add(index=i, name=item.name, status=item_status(error))
        return response

    def BatchGetContactability(self, request, context):
        external_ids = [profile_id(n, f"names[{i}]") for i, n in enumerate(request.names)]
        channels = [_CHANNEL_TO_NAME.get(c, "") for c in request.channels]
        at = ts_ms(request.at_time) if request.HasField("at_time") else None
        users = self.core.batch_contactability(external_ids, list(request.user_ids), channels, at)
        response = pb.BatchGetContactabilityResponse()
        for user in users:
            item = response.users.add(
                name=f"profiles/{user.external_id}" if user.external_id else "",
                user_id=user.user_id,
                found=user.found,
                time_zone=user.time_zone,
                quiet_hours_active=user.quiet_hours_active,
                notifications_disabled=user.notifications_disabled,
                app_uninstalled=user.app_uninstalled,
                consents=[consent_out(c, s) for c, s in user.consents.items()],
                contactable_channels=[_NAME_TO_CHANNEL[c] for c, ok in user.contactable.items() if ok],
            )
            if user.quiet_start_minute is not None:
                item.quiet_hours.start_minute = user.quiet_start_minute
                item.quiet_hours.end_minute = user.quiet_end_minute
        return response

    # erasure

    def EraseUser(self, request, context):
        principal = current_principal()
        result = self.core.erase_user(profile_id(request.name), principal.subject, request.reason)
        return pb.EraseUserResponse(
            erasure_id=result["erasure_id"],
            user_id=result["user_id"],
            erase_time=to_ts(result["erased_ms"]),
            deleted_rows=result["rows"],
        )


def _json_value_out(raw) -> common_pb2.Value:
    """A stored JSON property back as a typed value (timestamps come back as numbers)."""
    if isinstance(raw, bool):
        return common_pb2.Value(bool_value=raw)
    if isinstance(raw, (int, float)):
        return common_pb2.Value(number_value=float(raw))
    if isinstance(raw, list):
        return common_pb2.Value(string_list_value=common_pb2.StringList(values=[str(v) for v in raw]))
    return common_pb2.Value(string_value=str(raw))


class Maintenance:
    """Background work: retention pruning, announcing what was left unannounced (see
    services/profile/announce.py) and periodic full recomputes."""

    def __init__(self, core: ProfileCore):
        self.core = core
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.core.config.maintenance_interval_s <= 0 and self.core.config.full_recompute_interval_s <= 0:
            return
        self.thread = threading.Thread(target=self._run, name="profile-maintenance", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _run(self) -> None:
        config = self.core.config
        if config.maintenance_interval_s > 0:
            # At start: what a stopped process committed and did not announce.
            try:
                self.core.announce_left_behind()
            except Exception:
                log.exception("announcing what was left behind failed")
        tick = min(i for i in (config.maintenance_interval_s, config.full_recompute_interval_s) if i > 0)
        elapsed = 0
        while not self.stopping.wait(tick):
            elapsed += tick
            try:
                if config.maintenance_interval_s > 0 and elapsed % config.maintenance_interval_s < tick:
                    self.core.prune()
                    self.core.announce_left_behind()
                    self.core.refresh_traits()
                if config.full_recompute_interval_s > 0 and elapsed % config.full_recompute_interval_s < tick:
                    self.core.recompute_traits()
            except Exception:
                log.exception("profile maintenance round failed")


def build(settings: Settings, config: ProfileConfig | None = None) -> list[ServiceDefinition]:
    """Migrates the store, connects Redis and returns the service to mount."""
    migrate("profile", settings.database_url)
    engine = make_engine(settings.database_url)
    redis_client = connect_redis(settings, decode_responses=True)
    core = ProfileCore(engine, redis_client, config or ProfileConfig.from_env())
    maintenance = Maintenance(core)

    def stop() -> None:
        maintenance.stop()
        core.close()
        engine.dispose()

    return [
        ServiceDefinition(
            name="profile",
            register=pb_grpc.add_ProfileServiceServicer_to_server,
            servicer=ProfileServicer(core),
            full_name=FULL_NAME,
            roles=ROLES,
            start=maintenance.start,
            stop=stop,
        )
    ]
