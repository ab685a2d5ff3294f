import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from marketing.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_OUTCOME_UNSPECIFIED: _ClassVar[EventOutcome]
    EVENT_OUTCOME_STORED: _ClassVar[EventOutcome]
    EVENT_OUTCOME_DUPLICATE: _ClassVar[EventOutcome]
    EVENT_OUTCOME_REJECTED: _ClassVar[EventOutcome]

class RfmGroup(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RFM_GROUP_UNSPECIFIED: _ClassVar[RfmGroup]
    RFM_GROUP_CHAMPIONS: _ClassVar[RfmGroup]
    RFM_GROUP_LOYAL: _ClassVar[RfmGroup]
    RFM_GROUP_POTENTIAL_LOYALIST: _ClassVar[RfmGroup]
    RFM_GROUP_NEW_CUSTOMERS: _ClassVar[RfmGroup]
    RFM_GROUP_PROMISING: _ClassVar[RfmGroup]
    RFM_GROUP_NEED_ATTENTION: _ClassVar[RfmGroup]
    RFM_GROUP_ABOUT_TO_SLEEP: _ClassVar[RfmGroup]
    RFM_GROUP_AT_RISK: _ClassVar[RfmGroup]
    RFM_GROUP_CANNOT_LOSE_THEM: _ClassVar[RfmGroup]
    RFM_GROUP_HIBERNATING: _ClassVar[RfmGroup]
    RFM_GROUP_LOST: _ClassVar[RfmGroup]

class LifecycleStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIFECYCLE_STAGE_UNSPECIFIED: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_NEW: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_ACTIVE: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_DORMANT: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_CHURNED: _ClassVar[LifecycleStage]
EVENT_OUTCOME_UNSPECIFIED: EventOutcome
EVENT_OUTCOME_STORED: EventOutcome
EVENT_OUTCOME_DUPLICATE: EventOutcome
EVENT_OUTCOME_REJECTED: EventOutcome
RFM_GROUP_UNSPECIFIED: RfmGroup
RFM_GROUP_CHAMPIONS: RfmGroup
RFM_GROUP_LOYAL: RfmGroup
RFM_GROUP_POTENTIAL_LOYALIST: RfmGroup
RFM_GROUP_NEW_CUSTOMERS: RfmGroup
RFM_GROUP_PROMISING: RfmGroup
RFM_GROUP_NEED_ATTENTION: RfmGroup
RFM_GROUP_ABOUT_TO_SLEEP: RfmGroup
RFM_GROUP_AT_RISK: RfmGroup
RFM_GROUP_CANNOT_LOSE_THEM: RfmGroup
RFM_GROUP_HIBERNATING: RfmGroup
RFM_GROUP_LOST: RfmGroup
LIFECYCLE_STAGE_UNSPECIFIED: LifecycleStage
LIFECYCLE_STAGE_NEW: LifecycleStage
LIFECYCLE_STAGE_ACTIVE: LifecycleStage
LIFECYCLE_STAGE_DORMANT: LifecycleStage
LIFECYCLE_STAGE_CHURNED: LifecycleStage

class Profile(_message.Message):
    __slots__ = ("name", "external_id", "user_id", "attributes", "tags", "time_zone", "quiet_hours", "notifications_disabled", "app_uninstalled", "create_time", "update_time")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_DISABLED_FIELD_NUMBER: _ClassVar[int]
    APP_UNINSTALLED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    external_id: str
    user_id: int
    attributes: _containers.MessageMap[str, _common_pb2.Value]
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    time_zone: str
    quiet_hours: QuietHours
    notifications_disabled: bool
    app_uninstalled: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., external_id: _Optional[str] = ..., user_id: _Optional[int] = ..., attributes: _Optional[_Mapping[str, _common_pb2.Value]] = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., time_zone: _Optional[str] = ..., quiet_hours: _Optional[_Union[QuietHours, _Mapping]] = ..., notifications_disabled: _Optional[bool] = ..., app_uninstalled: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Tag(_message.Message):
    __slots__ = ("tag", "expire_time")
    TAG_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    tag: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, tag: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QuietHours(_message.Message):
    __slots__ = ("start_minute", "end_minute")
    START_MINUTE_FIELD_NUMBER: _ClassVar[int]
    END_MINUTE_FIELD_NUMBER: _ClassVar[int]
    start_minute: int
    end_minute: int
    def __init__(self, start_minute: _Optional[int] = ..., end_minute: _Optional[int] = ...) -> None: ...

class Attribute(_message.Message):
    __slots__ = ("name", "value_type", "description", "pii", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PII_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    value_type: _common_pb2.ValueType
    description: str
    pii: bool
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., value_type: _Optional[_Union[_common_pb2.ValueType, str]] = ..., description: _Optional[str] = ..., pii: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "user_id", "event_type", "timestamp", "value", "properties")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    event_type: str
    timestamp: _timestamp_pb2.Timestamp
    value: float
    properties: _containers.MessageMap[str, _common_pb2.Value]
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., event_type: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., properties: _Optional[_Mapping[str, _common_pb2.Value]] = ...) -> None: ...

class CreateProfileRequest(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class CreateProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class BatchGetProfilesRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetProfilesResponse(_message.Message):
    __slots__ = ("profiles",)
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[Profile]
    def __init__(self, profiles: _Optional[_Iterable[_Union[Profile, _Mapping]]] = ...) -> None: ...

class UpdateProfileRequest(_message.Message):
    __slots__ = ("profile", "update_mask")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class BatchUpdateProfilesRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[UpdateProfileRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[UpdateProfileRequest, _Mapping]]] = ...) -> None: ...

class BatchUpdateProfilesResponse(_message.Message):
    __slots__ = ("updated_count", "results")
    UPDATED_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    updated_count: int
    results: _containers.RepeatedCompositeFieldContainer[_common_pb2.ItemResult]
    def __init__(self, updated_count: _Optional[int] = ..., results: _Optional[_Iterable[_Union[_common_pb2.ItemResult, _Mapping]]] = ...) -> None: ...

class ListProfilesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "tag", "rfm_group", "lifecycle_stage", "attribute_equals", "created_after")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    RFM_GROUP_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_EQUALS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    tag: str
    rfm_group: RfmGroup
    lifecycle_stage: LifecycleStage
    attribute_equals: AttributeFilter
    created_after: _timestamp_pb2.Timestamp
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., tag: _Optional[str] = ..., rfm_group: _Optional[_Union[RfmGroup, str]] = ..., lifecycle_stage: _Optional[_Union[LifecycleStage, str]] = ..., attribute_equals: _Optional[_Union[AttributeFilter, _Mapping]] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AttributeFilter(_message.Message):
    __slots__ = ("attribute", "value")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    value: _common_pb2.Value
    def __init__(self, attribute: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...

class ListProfilesResponse(_message.Message):
    __slots__ = ("profiles", "next_page_token")
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[Profile]
    next_page_token: str
    def __init__(self, profiles: _Optional[_Iterable[_Union[Profile, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteProfileRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteProfileResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MergeIdentityRequest(_message.Message):
    __slots__ = ("name", "anonymous_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    anonymous_id: str
    def __init__(self, name: _Optional[str] = ..., anonymous_id: _Optional[str] = ...) -> None: ...

class MergeIdentityResponse(_message.Message):
    __slots__ = ("profile", "anonymous_profile_merged")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_PROFILE_MERGED_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    anonymous_profile_merged: bool
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ..., anonymous_profile_merged: _Optional[bool] = ...) -> None: ...

class CreateAttributeRequest(_message.Message):
    __slots__ = ("attribute",)
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    attribute: Attribute
    def __init__(self, attribute: _Optional[_Union[Attribute, _Mapping]] = ...) -> None: ...

class CreateAttributeResponse(_message.Message):
    __slots__ = ("attribute",)
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    attribute: Attribute
    def __init__(self, attribute: _Optional[_Union[Attribute, _Mapping]] = ...) -> None: ...

class GetAttributeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetAttributeResponse(_message.Message):
    __slots__ = ("attribute",)
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    attribute: Attribute
    def __init__(self, attribute: _Optional[_Union[Attribute, _Mapping]] = ...) -> None: ...

class ListAttributesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAttributesResponse(_message.Message):
    __slots__ = ("attributes", "next_page_token")
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    next_page_token: str
    def __init__(self, attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateAttributeRequest(_message.Message):
    __slots__ = ("attribute", "update_mask")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    attribute: Attribute
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, attribute: _Optional[_Union[Attribute, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateAttributeResponse(_message.Message):
    __slots__ = ("attribute",)
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    attribute: Attribute
    def __init__(self, attribute: _Optional[_Union[Attribute, _Mapping]] = ...) -> None: ...

class DeleteAttributeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteAttributeResponse(_message.Message):
    __slots__ = ("deleted_value_count",)
    DELETED_VALUE_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_value_count: int
    def __init__(self, deleted_value_count: _Optional[int] = ...) -> None: ...

class AddTagsRequest(_message.Message):
    __slots__ = ("name", "tags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    def __init__(self, name: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ...) -> None: ...

class AddTagsResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class RemoveTagsRequest(_message.Message):
    __slots__ = ("name", "tags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveTagsResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class IngestEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class EventResult(_message.Message):
    __slots__ = ("index", "event_id", "outcome", "status")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    outcome: EventOutcome
    status: _status_pb2.Status
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., outcome: _Optional[_Union[EventOutcome, str]] = ..., status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class IngestEventsResponse(_message.Message):
    __slots__ = ("accepted_count", "duplicate_count", "rejected_count", "results")
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    accepted_count: int
    duplicate_count: int
    rejected_count: int
    results: _containers.RepeatedCompositeFieldContainer[EventResult]
    def __init__(self, accepted_count: _Optional[int] = ..., duplicate_count: _Optional[int] = ..., rejected_count: _Optional[int] = ..., results: _Optional[_Iterable[_Union[EventResult, _Mapping]]] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("accepted_count", "duplicate_count", "message_count")
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    accepted_count: int
    duplicate_count: int
    message_count: int
    def __init__(self, accepted_count: _Optional[int] = ..., duplicate_count: _Optional[int] = ..., message_count: _Optional[int] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("parent", "event_type", "start_time", "end_time", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    event_type: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., event_type: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EventTypeCount(_message.Message):
    __slots__ = ("event_type", "count_7d", "count_30d", "count_90d", "count_total")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_7D_FIELD_NUMBER: _ClassVar[int]
    COUNT_30D_FIELD_NUMBER: _ClassVar[int]
    COUNT_90D_FIELD_NUMBER: _ClassVar[int]
    COUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    count_7d: int
    count_30d: int
    count_90d: int
    count_total: int
    def __init__(self, event_type: _Optional[str] = ..., count_7d: _Optional[int] = ..., count_30d: _Optional[int] = ..., count_90d: _Optional[int] = ..., count_total: _Optional[int] = ...) -> None: ...

class ModelScore(_message.Message):
    __slots__ = ("user_id", "external_id", "model_name", "score", "model_version", "score_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORE_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    external_id: str
    model_name: str
    score: float
    model_version: str
    score_time: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[int] = ..., external_id: _Optional[str] = ..., model_name: _Optional[str] = ..., score: _Optional[float] = ..., model_version: _Optional[str] = ..., score_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Traits(_message.Message):
    __slots__ = ("name", "user_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_group", "lifecycle_stage", "first_seen_time", "last_seen_time", "last_purchase_time", "as_of_time", "update_time", "event_counts", "scores")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RECENCY_DAYS_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    R_SCORE_FIELD_NUMBER: _ClassVar[int]
    F_SCORE_FIELD_NUMBER: _ClassVar[int]
    M_SCORE_FIELD_NUMBER: _ClassVar[int]
    RFM_GROUP_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_PURCHASE_TIME_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNTS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    name: str
    user_id: int
    recency_days: float
    frequency: int
    monetary: float
    r_score: int
    f_score: int
    m_score: int
    rfm_group: RfmGroup
    lifecycle_stage: LifecycleStage
    first_seen_time: _timestamp_pb2.Timestamp
    last_seen_time: _timestamp_pb2.Timestamp
    last_purchase_time: _timestamp_pb2.Timestamp
    as_of_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    event_counts: _containers.RepeatedCompositeFieldContainer[EventTypeCount]
    scores: _containers.RepeatedCompositeFieldContainer[ModelScore]
    def __init__(self, name: _Optional[str] = ..., user_id: _Optional[int] = ..., recency_days: _Optional[float] = ..., frequency: _Optional[int] = ..., monetary: _Optional[float] = ..., r_score: _Optional[int] = ..., f_score: _Optional[int] = ..., m_score: _Optional[int] = ..., rfm_group: _Optional[_Union[RfmGroup, str]] = ..., lifecycle_stage: _Optional[_Union[LifecycleStage, str]] = ..., first_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_purchase_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_counts: _Optional[_Iterable[_Union[EventTypeCount, _Mapping]]] = ..., scores: _Optional[_Iterable[_Union[ModelScore, _Mapping]]] = ...) -> None: ...

class GetTraitsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetTraitsResponse(_message.Message):
    __slots__ = ("traits",)
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    traits: Traits
    def __init__(self, traits: _Optional[_Union[Traits, _Mapping]] = ...) -> None: ...

class BatchGetTraitsRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class TraitsResult(_message.Message):
    __slots__ = ("name", "found", "traits")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    name: str
    found: bool
    traits: Traits
    def __init__(self, name: _Optional[str] = ..., found: _Optional[bool] = ..., traits: _Optional[_Union[Traits, _Mapping]] = ...) -> None: ...

class BatchGetTraitsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TraitsResult]
    def __init__(self, results: _Optional[_Iterable[_Union[TraitsResult, _Mapping]]] = ...) -> None: ...

class RecomputeTraitsRequest(_message.Message):
    __slots__ = ("as_of_time", "names")
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    as_of_time: _timestamp_pb2.Timestamp
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class RecomputeTraitsResponse(_message.Message):
    __slots__ = ("user_count", "population", "full", "as_of_time")
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    user_count: int
    population: int
    full: bool
    as_of_time: _timestamp_pb2.Timestamp
    def __init__(self, user_count: _Optional[int] = ..., population: _Optional[int] = ..., full: _Optional[bool] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WriteScoresRequest(_message.Message):
    __slots__ = ("scores",)
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[ModelScore]
    def __init__(self, scores: _Optional[_Iterable[_Union[ModelScore, _Mapping]]] = ...) -> None: ...

class WriteScoresResponse(_message.Message):
    __slots__ = ("written_count", "results")
    WRITTEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    written_count: int
    results: _containers.RepeatedCompositeFieldContainer[_common_pb2.ItemResult]
    def __init__(self, written_count: _Optional[int] = ..., results: _Optional[_Iterable[_Union[_common_pb2.ItemResult, _Mapping]]] = ...) -> None: ...

class Consent(_message.Message):
    __slots__ = ("channel", "subscribed", "source", "update_time", "defaulted")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEFAULTED_FIELD_NUMBER: _ClassVar[int]
    channel: _common_pb2.Channel
    subscribed: bool
    source: str
    update_time: _timestamp_pb2.Timestamp
    defaulted: bool
    def __init__(self, channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., subscribed: _Optional[bool] = ..., source: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., defaulted: _Optional[bool] = ...) -> None: ...

class GetConsentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetConsentResponse(_message.Message):
    __slots__ = ("consents",)
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    consents: _containers.RepeatedCompositeFieldContainer[Consent]
    def __init__(self, consents: _Optional[_Iterable[_Union[Consent, _Mapping]]] = ...) -> None: ...

class UpdateConsentRequest(_message.Message):
    __slots__ = ("name", "consents")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    consents: _containers.RepeatedCompositeFieldContainer[Consent]
    def __init__(self, name: _Optional[str] = ..., consents: _Optional[_Iterable[_Union[Consent, _Mapping]]] = ...) -> None: ...

class UpdateConsentResponse(_message.Message):
    __slots__ = ("consents",)
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    consents: _containers.RepeatedCompositeFieldContainer[Consent]
    def __init__(self, consents: _Optional[_Iterable[_Union[Consent, _Mapping]]] = ...) -> None: ...

class BatchUpdateConsentRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[UpdateConsentRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[UpdateConsentRequest, _Mapping]]] = ...) -> None: ...

class BatchUpdateConsentResponse(_message.Message):
    __slots__ = ("updated_count", "results")
    UPDATED_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    updated_count: int
    results: _containers.RepeatedCompositeFieldContainer[_common_pb2.ItemResult]
    def __init__(self, updated_count: _Optional[int] = ..., results: _Optional[_Iterable[_Union[_common_pb2.ItemResult, _Mapping]]] = ...) -> None: ...

class BatchGetContactabilityRequest(_message.Message):
    __slots__ = ("names", "user_ids", "channels", "at_time")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    AT_TIME_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    user_ids: _containers.RepeatedScalarFieldContainer[int]
    channels: _containers.RepeatedScalarFieldContainer[_common_pb2.Channel]
    at_time: _timestamp_pb2.Timestamp
    def __init__(self, names: _Optional[_Iterable[str]] = ..., user_ids: _Optional[_Iterable[int]] = ..., channels: _Optional[_Iterable[_Union[_common_pb2.Channel, str]]] = ..., at_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Contactability(_message.Message):
    __slots__ = ("name", "user_id", "found", "time_zone", "quiet_hours", "quiet_hours_active", "notifications_disabled", "app_uninstalled", "consents", "contactable_channels")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_DISABLED_FIELD_NUMBER: _ClassVar[int]
    APP_UNINSTALLED_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    CONTACTABLE_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    user_id: int
    found: bool
    time_zone: str
    quiet_hours: QuietHours
    quiet_hours_active: bool
    notifications_disabled: bool
    app_uninstalled: bool
    consents: _containers.RepeatedCompositeFieldContainer[Consent]
    contactable_channels: _containers.RepeatedScalarFieldContainer[_common_pb2.Channel]
    def __init__(self, name: _Optional[str] = ..., user_id: _Optional[int] = ..., found: _Optional[bool] = ..., time_zone: _Optional[str] = ..., quiet_hours: _Optional[_Union[QuietHours, _Mapping]] = ..., quiet_hours_active: _Optional[bool] = ..., notifications_disabled: _Optional[bool] = ..., app_uninstalled: _Optional[bool] = ..., consents: _Optional[_Iterable[_Union[Consent, _Mapping]]] = ..., contactable_channels: _Optional[_Iterable[_Union[_common_pb2.Channel, str]]] = ...) -> None: ...

class BatchGetContactabilityResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[Contactability]
    def __init__(self, users: _Optional[_Iterable[_Union[Contactability, _Mapping]]] = ...) -> None: ...

class EraseUserRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EraseUserResponse(_message.Message):
    __slots__ = ("erasure_id", "user_id", "erase_time", "deleted_rows")
    class DeletedRowsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ERASURE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ERASE_TIME_FIELD_NUMBER: _ClassVar[int]
    DELETED_ROWS_FIELD_NUMBER: _ClassVar[int]
    erasure_id: str
    user_id: int
    erase_time: _timestamp_pb2.Timestamp
    deleted_rows: _containers.ScalarMap[str, int]
    def __init__(self, erasure_id: _Optional[str] = ..., user_id: _Optional[int] = ..., erase_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_rows: _Optional[_Mapping[str, int]] = ...) -> None: ...
