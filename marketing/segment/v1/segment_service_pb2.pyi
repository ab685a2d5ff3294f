import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from marketing.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATOR_UNSPECIFIED: _ClassVar[Operator]
    OPERATOR_EQ: _ClassVar[Operator]
    OPERATOR_NE: _ClassVar[Operator]
    OPERATOR_LT: _ClassVar[Operator]
    OPERATOR_LE: _ClassVar[Operator]
    OPERATOR_GT: _ClassVar[Operator]
    OPERATOR_GE: _ClassVar[Operator]
    OPERATOR_IN: _ClassVar[Operator]
    OPERATOR_NOT_IN: _ClassVar[Operator]
    OPERATOR_BETWEEN: _ClassVar[Operator]
    OPERATOR_CONTAINS: _ClassVar[Operator]
    OPERATOR_EXISTS: _ClassVar[Operator]

class FieldSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_SOURCE_UNSPECIFIED: _ClassVar[FieldSource]
    FIELD_SOURCE_ATTRIBUTE: _ClassVar[FieldSource]
    FIELD_SOURCE_TRAIT: _ClassVar[FieldSource]
    FIELD_SOURCE_SCORE: _ClassVar[FieldSource]

class Aggregate(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGGREGATE_UNSPECIFIED: _ClassVar[Aggregate]
    AGGREGATE_COUNT: _ClassVar[Aggregate]
    AGGREGATE_SUM: _ClassVar[Aggregate]
    AGGREGATE_AVG: _ClassVar[Aggregate]
    AGGREGATE_MIN: _ClassVar[Aggregate]
    AGGREGATE_MAX: _ClassVar[Aggregate]
    AGGREGATE_ACTIVE_DAYS: _ClassVar[Aggregate]

class TimeUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_UNIT_UNSPECIFIED: _ClassVar[TimeUnit]
    TIME_UNIT_MINUTES: _ClassVar[TimeUnit]
    TIME_UNIT_HOURS: _ClassVar[TimeUnit]
    TIME_UNIT_DAYS: _ClassVar[TimeUnit]

class SnapshotTrigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SNAPSHOT_TRIGGER_UNSPECIFIED: _ClassVar[SnapshotTrigger]
    SNAPSHOT_TRIGGER_MANUAL: _ClassVar[SnapshotTrigger]
    SNAPSHOT_TRIGGER_SCHEDULED: _ClassVar[SnapshotTrigger]
OPERATOR_UNSPECIFIED: Operator
OPERATOR_EQ: Operator
OPERATOR_NE: Operator
OPERATOR_LT: Operator
OPERATOR_LE: Operator
OPERATOR_GT: Operator
OPERATOR_GE: Operator
OPERATOR_IN: Operator
OPERATOR_NOT_IN: Operator
OPERATOR_BETWEEN: Operator
OPERATOR_CONTAINS: Operator
OPERATOR_EXISTS: Operator
FIELD_SOURCE_UNSPECIFIED: FieldSource
FIELD_SOURCE_ATTRIBUTE: FieldSource
FIELD_SOURCE_TRAIT: FieldSource
FIELD_SOURCE_SCORE: FieldSource
AGGREGATE_UNSPECIFIED: Aggregate
AGGREGATE_COUNT: Aggregate
AGGREGATE_SUM: Aggregate
AGGREGATE_AVG: Aggregate
AGGREGATE_MIN: Aggregate
AGGREGATE_MAX: Aggregate
AGGREGATE_ACTIVE_DAYS: Aggregate
TIME_UNIT_UNSPECIFIED: TimeUnit
TIME_UNIT_MINUTES: TimeUnit
TIME_UNIT_HOURS: TimeUnit
TIME_UNIT_DAYS: TimeUnit
SNAPSHOT_TRIGGER_UNSPECIFIED: SnapshotTrigger
SNAPSHOT_TRIGGER_MANUAL: SnapshotTrigger
SNAPSHOT_TRIGGER_SCHEDULED: SnapshotTrigger

class Segment(_message.Message):
    __slots__ = ("name", "display_name", "description", "rule", "rule_text", "realtime", "refresh", "revision", "creator", "create_time", "update_time", "next_refresh_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    REALTIME_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_REFRESH_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    rule: Condition
    rule_text: str
    realtime: bool
    refresh: RefreshSchedule
    revision: int
    creator: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    next_refresh_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., rule: _Optional[_Union[Condition, _Mapping]] = ..., rule_text: _Optional[str] = ..., realtime: _Optional[bool] = ..., refresh: _Optional[_Union[RefreshSchedule, _Mapping]] = ..., revision: _Optional[int] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_refresh_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RefreshSchedule(_message.Message):
    __slots__ = ("every_minutes", "daily_minute_utc")
    EVERY_MINUTES_FIELD_NUMBER: _ClassVar[int]
    DAILY_MINUTE_UTC_FIELD_NUMBER: _ClassVar[int]
    every_minutes: int
    daily_minute_utc: int
    def __init__(self, every_minutes: _Optional[int] = ..., daily_minute_utc: _Optional[int] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("all_of", "any_of", "negation", "attribute", "tag", "event_aggregate", "sequence", "rfm", "lifecycle", "consent", "segment")
    ALL_OF_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    NEGATION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    EVENT_AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RFM_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    all_of: ConditionGroup
    any_of: ConditionGroup
    negation: Condition
    attribute: AttributeCondition
    tag: TagCondition
    event_aggregate: EventAggregateCondition
    sequence: SequenceCondition
    rfm: RfmCondition
    lifecycle: LifecycleCondition
    consent: ConsentCondition
    segment: SegmentCondition
    def __init__(self, all_of: _Optional[_Union[ConditionGroup, _Mapping]] = ..., any_of: _Optional[_Union[ConditionGroup, _Mapping]] = ..., negation: _Optional[_Union[Condition, _Mapping]] = ..., attribute: _Optional[_Union[AttributeCondition, _Mapping]] = ..., tag: _Optional[_Union[TagCondition, _Mapping]] = ..., event_aggregate: _Optional[_Union[EventAggregateCondition, _Mapping]] = ..., sequence: _Optional[_Union[SequenceCondition, _Mapping]] = ..., rfm: _Optional[_Union[RfmCondition, _Mapping]] = ..., lifecycle: _Optional[_Union[LifecycleCondition, _Mapping]] = ..., consent: _Optional[_Union[ConsentCondition, _Mapping]] = ..., segment: _Optional[_Union[SegmentCondition, _Mapping]] = ...) -> None: ...

class ConditionGroup(_message.Message):
    __slots__ = ("conditions",)
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class FieldRef(_message.Message):
    __slots__ = ("name", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: FieldSource
    def __init__(self, name: _Optional[str] = ..., source: _Optional[_Union[FieldSource, str]] = ...) -> None: ...

class AttributeCondition(_message.Message):
    __slots__ = ("field", "op", "values")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    field: FieldRef
    op: Operator
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.Value]
    def __init__(self, field: _Optional[_Union[FieldRef, _Mapping]] = ..., op: _Optional[_Union[Operator, str]] = ..., values: _Optional[_Iterable[_Union[_common_pb2.Value, _Mapping]]] = ...) -> None: ...

class TagCondition(_message.Message):
    __slots__ = ("tag", "absent")
    TAG_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    tag: str
    absent: bool
    def __init__(self, tag: _Optional[str] = ..., absent: _Optional[bool] = ...) -> None: ...

class PropertyFilter(_message.Message):
    __slots__ = ("property", "op", "values")
    PROPERTY_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    property: str
    op: Operator
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.Value]
    def __init__(self, property: _Optional[str] = ..., op: _Optional[_Union[Operator, str]] = ..., values: _Optional[_Iterable[_Union[_common_pb2.Value, _Mapping]]] = ...) -> None: ...

class EventSelector(_message.Message):
    __slots__ = ("event_type", "filters")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    filters: _containers.RepeatedCompositeFieldContainer[PropertyFilter]
    def __init__(self, event_type: _Optional[str] = ..., filters: _Optional[_Iterable[_Union[PropertyFilter, _Mapping]]] = ...) -> None: ...

class RelativeDuration(_message.Message):
    __slots__ = ("amount", "unit")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    amount: int
    unit: TimeUnit
    def __init__(self, amount: _Optional[int] = ..., unit: _Optional[_Union[TimeUnit, str]] = ...) -> None: ...

class AbsoluteRange(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TimeWindow(_message.Message):
    __slots__ = ("last", "range")
    LAST_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    last: RelativeDuration
    range: AbsoluteRange
    def __init__(self, last: _Optional[_Union[RelativeDuration, _Mapping]] = ..., range: _Optional[_Union[AbsoluteRange, _Mapping]] = ...) -> None: ...

class EventAggregateCondition(_message.Message):
    __slots__ = ("aggregate", "event", "measure", "window", "op", "values")
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    MEASURE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    aggregate: Aggregate
    event: EventSelector
    measure: str
    window: TimeWindow
    op: Operator
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, aggregate: _Optional[_Union[Aggregate, str]] = ..., event: _Optional[_Union[EventSelector, _Mapping]] = ..., measure: _Optional[str] = ..., window: _Optional[_Union[TimeWindow, _Mapping]] = ..., op: _Optional[_Union[Operator, str]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class SequenceCondition(_message.Message):
    __slots__ = ("first", "second", "then_absent", "within", "window")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    THEN_ABSENT_FIELD_NUMBER: _ClassVar[int]
    WITHIN_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    first: EventSelector
    second: EventSelector
    then_absent: bool
    within: RelativeDuration
    window: TimeWindow
    def __init__(self, first: _Optional[_Union[EventSelector, _Mapping]] = ..., second: _Optional[_Union[EventSelector, _Mapping]] = ..., then_absent: _Optional[bool] = ..., within: _Optional[_Union[RelativeDuration, _Mapping]] = ..., window: _Optional[_Union[TimeWindow, _Mapping]] = ...) -> None: ...

class RfmCondition(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, groups: _Optional[_Iterable[str]] = ...) -> None: ...

class LifecycleCondition(_message.Message):
    __slots__ = ("stages",)
    STAGES_FIELD_NUMBER: _ClassVar[int]
    stages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stages: _Optional[_Iterable[str]] = ...) -> None: ...

class ConsentCondition(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: _common_pb2.Channel
    def __init__(self, channel: _Optional[_Union[_common_pb2.Channel, str]] = ...) -> None: ...

class SegmentCondition(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: str
    def __init__(self, segment: _Optional[str] = ...) -> None: ...

class RuleViolation(_message.Message):
    __slots__ = ("field", "description", "line", "column")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    line: int
    column: int
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ..., line: _Optional[int] = ..., column: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("user_id", "external_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    external_id: str
    def __init__(self, user_id: _Optional[int] = ..., external_id: _Optional[str] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("name", "version", "size", "create_time", "as_of_time", "rule_text", "trigger", "duration_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    size: int
    create_time: _timestamp_pb2.Timestamp
    as_of_time: _timestamp_pb2.Timestamp
    rule_text: str
    trigger: SnapshotTrigger
    duration_ms: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., size: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule_text: _Optional[str] = ..., trigger: _Optional[_Union[SnapshotTrigger, str]] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class CreateSegmentRequest(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ...) -> None: ...

class CreateSegmentResponse(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ...) -> None: ...

class GetSegmentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetSegmentResponse(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ...) -> None: ...

class ListSegmentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSegmentsResponse(_message.Message):
    __slots__ = ("segments", "next_page_token")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    next_page_token: str
    def __init__(self, segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSegmentRequest(_message.Message):
    __slots__ = ("segment", "update_mask")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateSegmentResponse(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ...) -> None: ...

class DeleteSegmentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSegmentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ValidateRuleRequest(_message.Message):
    __slots__ = ("rule", "rule_text", "segment")
    RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    rule: Condition
    rule_text: str
    segment: str
    def __init__(self, rule: _Optional[_Union[Condition, _Mapping]] = ..., rule_text: _Optional[str] = ..., segment: _Optional[str] = ...) -> None: ...

class ValidateRuleResponse(_message.Message):
    __slots__ = ("valid", "violations", "rule_text")
    VALID_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    violations: _containers.RepeatedCompositeFieldContainer[RuleViolation]
    rule_text: str
    def __init__(self, valid: _Optional[bool] = ..., violations: _Optional[_Iterable[_Union[RuleViolation, _Mapping]]] = ..., rule_text: _Optional[str] = ...) -> None: ...

class ParseRuleRequest(_message.Message):
    __slots__ = ("rule_text",)
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    rule_text: str
    def __init__(self, rule_text: _Optional[str] = ...) -> None: ...

class ParseRuleResponse(_message.Message):
    __slots__ = ("rule", "rule_text")
    RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    rule: Condition
    rule_text: str
    def __init__(self, rule: _Optional[_Union[Condition, _Mapping]] = ..., rule_text: _Optional[str] = ...) -> None: ...

class FormatRuleRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Condition
    def __init__(self, rule: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...

class FormatRuleResponse(_message.Message):
    __slots__ = ("rule_text",)
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    rule_text: str
    def __init__(self, rule_text: _Optional[str] = ...) -> None: ...

class EstimateSegmentRequest(_message.Message):
    __slots__ = ("rule", "rule_text", "segment", "as_of_time")
    RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    rule: Condition
    rule_text: str
    segment: str
    as_of_time: _timestamp_pb2.Timestamp
    def __init__(self, rule: _Optional[_Union[Condition, _Mapping]] = ..., rule_text: _Optional[str] = ..., segment: _Optional[str] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EstimateSegmentResponse(_message.Message):
    __slots__ = ("count", "population", "as_of_time")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    count: int
    population: int
    as_of_time: _timestamp_pb2.Timestamp
    def __init__(self, count: _Optional[int] = ..., population: _Optional[int] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PreviewSegmentRequest(_message.Message):
    __slots__ = ("rule", "rule_text", "segment", "page_size", "as_of_time")
    RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    rule: Condition
    rule_text: str
    segment: str
    page_size: int
    as_of_time: _timestamp_pb2.Timestamp
    def __init__(self, rule: _Optional[_Union[Condition, _Mapping]] = ..., rule_text: _Optional[str] = ..., segment: _Optional[str] = ..., page_size: _Optional[int] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PreviewSegmentResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("parent", "as_of_time")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    parent: str
    as_of_time: _timestamp_pb2.Timestamp
    def __init__(self, parent: _Optional[str] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSnapshotResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ...) -> None: ...

class GetSnapshotRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetSnapshotResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots", "next_page_token")
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    next_page_token: str
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamSnapshotMembersRequest(_message.Message):
    __slots__ = ("name", "batch_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    batch_size: int
    def __init__(self, name: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class StreamSnapshotMembersResponse(_message.Message):
    __slots__ = ("snapshot", "members")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    snapshot: str
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, snapshot: _Optional[str] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class CheckMembershipRequest(_message.Message):
    __slots__ = ("segment", "external_id", "version")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    segment: str
    external_id: str
    version: int
    def __init__(self, segment: _Optional[str] = ..., external_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class CheckMembershipResponse(_message.Message):
    __slots__ = ("member", "snapshot", "user_id", "live")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    member: bool
    snapshot: str
    user_id: int
    live: bool
    def __init__(self, member: _Optional[bool] = ..., snapshot: _Optional[str] = ..., user_id: _Optional[int] = ..., live: _Optional[bool] = ...) -> None: ...

class CompareSnapshotsRequest(_message.Message):
    __slots__ = ("segment", "from_version", "to_version", "max_members")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    segment: str
    from_version: int
    to_version: int
    max_members: int
    def __init__(self, segment: _Optional[str] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., max_members: _Optional[int] = ...) -> None: ...

class CompareSnapshotsResponse(_message.Message):
    __slots__ = ("from_snapshot", "to_snapshot", "entered_count", "left_count", "stayed_count", "entered", "left")
    FROM_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TO_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    ENTERED_COUNT_FIELD_NUMBER: _ClassVar[int]
    LEFT_COUNT_FIELD_NUMBER: _ClassVar[int]
    STAYED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    from_snapshot: str
    to_snapshot: str
    entered_count: int
    left_count: int
    stayed_count: int
    entered: _containers.RepeatedCompositeFieldContainer[Member]
    left: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, from_snapshot: _Optional[str] = ..., to_snapshot: _Optional[str] = ..., entered_count: _Optional[int] = ..., left_count: _Optional[int] = ..., stayed_count: _Optional[int] = ..., entered: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., left: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class BucketBounds(_message.Message):
    __slots__ = ("field", "bounds")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    field: str
    bounds: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, field: _Optional[str] = ..., bounds: _Optional[_Iterable[float]] = ...) -> None: ...

class GetInsightRequest(_message.Message):
    __slots__ = ("rule", "rule_text", "segment", "fields", "bucket_bounds", "top_values", "exclude_rfm", "exclude_lifecycle", "as_of_time")
    RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_TEXT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    TOP_VALUES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_RFM_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    rule: Condition
    rule_text: str
    segment: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    bucket_bounds: _containers.RepeatedCompositeFieldContainer[BucketBounds]
    top_values: int
    exclude_rfm: bool
    exclude_lifecycle: bool
    as_of_time: _timestamp_pb2.Timestamp
    def __init__(self, rule: _Optional[_Union[Condition, _Mapping]] = ..., rule_text: _Optional[str] = ..., segment: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., bucket_bounds: _Optional[_Iterable[_Union[BucketBounds, _Mapping]]] = ..., top_values: _Optional[int] = ..., exclude_rfm: _Optional[bool] = ..., exclude_lifecycle: _Optional[bool] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class InsightBucket(_message.Message):
    __slots__ = ("value", "segment_count", "population_count", "segment_share", "population_share", "tgi")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    POPULATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_SHARE_FIELD_NUMBER: _ClassVar[int]
    POPULATION_SHARE_FIELD_NUMBER: _ClassVar[int]
    TGI_FIELD_NUMBER: _ClassVar[int]
    value: str
    segment_count: int
    population_count: int
    segment_share: float
    population_share: float
    tgi: float
    def __init__(self, value: _Optional[str] = ..., segment_count: _Optional[int] = ..., population_count: _Optional[int] = ..., segment_share: _Optional[float] = ..., population_share: _Optional[float] = ..., tgi: _Optional[float] = ...) -> None: ...

class Distribution(_message.Message):
    __slots__ = ("dimension", "buckets")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    dimension: str
    buckets: _containers.RepeatedCompositeFieldContainer[InsightBucket]
    def __init__(self, dimension: _Optional[str] = ..., buckets: _Optional[_Iterable[_Union[InsightBucket, _Mapping]]] = ...) -> None: ...

class GetInsightResponse(_message.Message):
    __slots__ = ("segment_size", "population_size", "distributions")
    SEGMENT_SIZE_FIELD_NUMBER: _ClassVar[int]
    POPULATION_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    segment_size: int
    population_size: int
    distributions: _containers.RepeatedCompositeFieldContainer[Distribution]
    def __init__(self, segment_size: _Optional[int] = ..., population_size: _Optional[int] = ..., distributions: _Optional[_Iterable[_Union[Distribution, _Mapping]]] = ...) -> None: ...
