import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
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

class GoalType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GOAL_TYPE_UNSPECIFIED: _ClassVar[GoalType]
    GOAL_TYPE_ACQUIRE: _ClassVar[GoalType]
    GOAL_TYPE_CONVERT: _ClassVar[GoalType]
    GOAL_TYPE_ACTIVATE: _ClassVar[GoalType]
    GOAL_TYPE_RETAIN: _ClassVar[GoalType]
    GOAL_TYPE_WIN_BACK: _ClassVar[GoalType]

class Category(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATEGORY_UNSPECIFIED: _ClassVar[Category]
    CATEGORY_TRANSACTIONAL: _ClassVar[Category]
    CATEGORY_MARKETING: _ClassVar[Category]

class PlanState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_STATE_UNSPECIFIED: _ClassVar[PlanState]
    PLAN_STATE_DRAFT: _ClassVar[PlanState]
    PLAN_STATE_PENDING_APPROVAL: _ClassVar[PlanState]
    PLAN_STATE_APPROVED: _ClassVar[PlanState]
    PLAN_STATE_REJECTED: _ClassVar[PlanState]
    PLAN_STATE_SCHEDULED: _ClassVar[PlanState]
    PLAN_STATE_RUNNING: _ClassVar[PlanState]
    PLAN_STATE_PAUSED: _ClassVar[PlanState]
    PLAN_STATE_COMPLETED: _ClassVar[PlanState]
    PLAN_STATE_CANCELLED: _ClassVar[PlanState]

class ExperimentMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPERIMENT_MODE_UNSPECIFIED: _ClassVar[ExperimentMode]
    EXPERIMENT_MODE_SPLIT: _ClassVar[ExperimentMode]
    EXPERIMENT_MODE_RACE: _ClassVar[ExperimentMode]
    EXPERIMENT_MODE_BANDIT: _ClassVar[ExperimentMode]

class ExperimentMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPERIMENT_METRIC_UNSPECIFIED: _ClassVar[ExperimentMetric]
    EXPERIMENT_METRIC_CLICK_THROUGH: _ClassVar[ExperimentMetric]
    EXPERIMENT_METRIC_CONVERSION: _ClassVar[ExperimentMetric]

class SendStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEND_STATUS_UNSPECIFIED: _ClassVar[SendStatus]
    SEND_STATUS_CLAIMED: _ClassVar[SendStatus]
    SEND_STATUS_DEFERRED: _ClassVar[SendStatus]
    SEND_STATUS_RETRY: _ClassVar[SendStatus]
    SEND_STATUS_SENT: _ClassVar[SendStatus]
    SEND_STATUS_SUPPRESSED: _ClassVar[SendStatus]
    SEND_STATUS_DEAD_LETTERED: _ClassVar[SendStatus]

class OutcomeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_TYPE_UNSPECIFIED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_DELIVERED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_OPENED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_CLICKED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_CONVERTED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_UNSUBSCRIBED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_NOTIFICATION_DISABLED: _ClassVar[OutcomeType]
    OUTCOME_TYPE_UNINSTALLED: _ClassVar[OutcomeType]
GOAL_TYPE_UNSPECIFIED: GoalType
GOAL_TYPE_ACQUIRE: GoalType
GOAL_TYPE_CONVERT: GoalType
GOAL_TYPE_ACTIVATE: GoalType
GOAL_TYPE_RETAIN: GoalType
GOAL_TYPE_WIN_BACK: GoalType
CATEGORY_UNSPECIFIED: Category
CATEGORY_TRANSACTIONAL: Category
CATEGORY_MARKETING: Category
PLAN_STATE_UNSPECIFIED: PlanState
PLAN_STATE_DRAFT: PlanState
PLAN_STATE_PENDING_APPROVAL: PlanState
PLAN_STATE_APPROVED: PlanState
PLAN_STATE_REJECTED: PlanState
PLAN_STATE_SCHEDULED: PlanState
PLAN_STATE_RUNNING: PlanState
PLAN_STATE_PAUSED: PlanState
PLAN_STATE_COMPLETED: PlanState
PLAN_STATE_CANCELLED: PlanState
EXPERIMENT_MODE_UNSPECIFIED: ExperimentMode
EXPERIMENT_MODE_SPLIT: ExperimentMode
EXPERIMENT_MODE_RACE: ExperimentMode
EXPERIMENT_MODE_BANDIT: ExperimentMode
EXPERIMENT_METRIC_UNSPECIFIED: ExperimentMetric
EXPERIMENT_METRIC_CLICK_THROUGH: ExperimentMetric
EXPERIMENT_METRIC_CONVERSION: ExperimentMetric
SEND_STATUS_UNSPECIFIED: SendStatus
SEND_STATUS_CLAIMED: SendStatus
SEND_STATUS_DEFERRED: SendStatus
SEND_STATUS_RETRY: SendStatus
SEND_STATUS_SENT: SendStatus
SEND_STATUS_SUPPRESSED: SendStatus
SEND_STATUS_DEAD_LETTERED: SendStatus
OUTCOME_TYPE_UNSPECIFIED: OutcomeType
OUTCOME_TYPE_DELIVERED: OutcomeType
OUTCOME_TYPE_OPENED: OutcomeType
OUTCOME_TYPE_CLICKED: OutcomeType
OUTCOME_TYPE_CONVERTED: OutcomeType
OUTCOME_TYPE_UNSUBSCRIBED: OutcomeType
OUTCOME_TYPE_NOTIFICATION_DISABLED: OutcomeType
OUTCOME_TYPE_UNINSTALLED: OutcomeType

class Plan(_message.Message):
    __slots__ = ("name", "display_name", "goal_type", "scene", "business_goal", "start_time", "end_time", "priority", "category", "owner", "touches", "state", "creator", "content_hash", "approved_by", "reject_reason", "create_time", "update_time", "control_group_percent", "follow_ups")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    GOAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_GOAL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TOUCHES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONTROL_GROUP_PERCENT_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_UPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    goal_type: GoalType
    scene: str
    business_goal: BusinessGoal
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    priority: int
    category: Category
    owner: str
    touches: _containers.RepeatedCompositeFieldContainer[Touch]
    state: PlanState
    creator: str
    content_hash: str
    approved_by: str
    reject_reason: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    control_group_percent: float
    follow_ups: _containers.RepeatedCompositeFieldContainer[FollowUp]
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., goal_type: _Optional[_Union[GoalType, str]] = ..., scene: _Optional[str] = ..., business_goal: _Optional[_Union[BusinessGoal, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., priority: _Optional[int] = ..., category: _Optional[_Union[Category, str]] = ..., owner: _Optional[str] = ..., touches: _Optional[_Iterable[_Union[Touch, _Mapping]]] = ..., state: _Optional[_Union[PlanState, str]] = ..., creator: _Optional[str] = ..., content_hash: _Optional[str] = ..., approved_by: _Optional[str] = ..., reject_reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., control_group_percent: _Optional[float] = ..., follow_ups: _Optional[_Iterable[_Union[FollowUp, _Mapping]]] = ...) -> None: ...

class BusinessGoal(_message.Message):
    __slots__ = ("event_type", "target", "attribution_window_seconds")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    target: float
    attribution_window_seconds: int
    def __init__(self, event_type: _Optional[str] = ..., target: _Optional[float] = ..., attribution_window_seconds: _Optional[int] = ...) -> None: ...

class Touch(_message.Message):
    __slots__ = ("touch_id", "channel", "content", "audience", "schedule", "send_rate_per_second", "trigger", "experiment")
    TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    SEND_RATE_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    touch_id: str
    channel: _common_pb2.Channel
    content: Content
    audience: Audience
    schedule: Schedule
    send_rate_per_second: int
    trigger: Trigger
    experiment: Experiment
    def __init__(self, touch_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., content: _Optional[_Union[Content, _Mapping]] = ..., audience: _Optional[_Union[Audience, _Mapping]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., send_rate_per_second: _Optional[int] = ..., trigger: _Optional[_Union[Trigger, _Mapping]] = ..., experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class Content(_message.Message):
    __slots__ = ("title", "body", "subject", "data", "defaults", "webhook_url")
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DefaultsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    title: str
    body: str
    subject: str
    data: _containers.ScalarMap[str, str]
    defaults: _containers.ScalarMap[str, str]
    webhook_url: str
    def __init__(self, title: _Optional[str] = ..., body: _Optional[str] = ..., subject: _Optional[str] = ..., data: _Optional[_Mapping[str, str]] = ..., defaults: _Optional[_Mapping[str, str]] = ..., webhook_url: _Optional[str] = ...) -> None: ...

class Audience(_message.Message):
    __slots__ = ("segment", "users")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    segment: str
    users: UserList
    def __init__(self, segment: _Optional[str] = ..., users: _Optional[_Union[UserList, _Mapping]] = ...) -> None: ...

class UserList(_message.Message):
    __slots__ = ("external_ids",)
    EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    external_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, external_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("now", "at_time", "local_time", "cron")
    NOW_FIELD_NUMBER: _ClassVar[int]
    AT_TIME_FIELD_NUMBER: _ClassVar[int]
    LOCAL_TIME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    now: Now
    at_time: _timestamp_pb2.Timestamp
    local_time: str
    cron: Cron
    def __init__(self, now: _Optional[_Union[Now, _Mapping]] = ..., at_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., local_time: _Optional[str] = ..., cron: _Optional[_Union[Cron, _Mapping]] = ...) -> None: ...

class Now(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cron(_message.Message):
    __slots__ = ("expression", "time_zone", "user_time_zone")
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    USER_TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    expression: str
    time_zone: str
    user_time_zone: bool
    def __init__(self, expression: _Optional[str] = ..., time_zone: _Optional[str] = ..., user_time_zone: _Optional[bool] = ...) -> None: ...

class Trigger(_message.Message):
    __slots__ = ("event_type", "absent_event_type", "within_seconds", "entered_segment", "delay_seconds", "property_equals", "correlate_on_property")
    class PropertyEqualsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ABSENT_EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WITHIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENTERED_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_EQUALS_FIELD_NUMBER: _ClassVar[int]
    CORRELATE_ON_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    absent_event_type: str
    within_seconds: int
    entered_segment: str
    delay_seconds: int
    property_equals: _containers.MessageMap[str, _common_pb2.Value]
    correlate_on_property: str
    def __init__(self, event_type: _Optional[str] = ..., absent_event_type: _Optional[str] = ..., within_seconds: _Optional[int] = ..., entered_segment: _Optional[str] = ..., delay_seconds: _Optional[int] = ..., property_equals: _Optional[_Mapping[str, _common_pb2.Value]] = ..., correlate_on_property: _Optional[str] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("mode", "variants", "exploration_percent", "observation_window_seconds", "metric", "min_samples_per_variant", "deadline_seconds", "fallback_variant_id")
    MODE_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_PER_VARIANT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    mode: ExperimentMode
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    exploration_percent: float
    observation_window_seconds: int
    metric: ExperimentMetric
    min_samples_per_variant: int
    deadline_seconds: int
    fallback_variant_id: str
    def __init__(self, mode: _Optional[_Union[ExperimentMode, str]] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., exploration_percent: _Optional[float] = ..., observation_window_seconds: _Optional[int] = ..., metric: _Optional[_Union[ExperimentMetric, str]] = ..., min_samples_per_variant: _Optional[int] = ..., deadline_seconds: _Optional[int] = ..., fallback_variant_id: _Optional[str] = ...) -> None: ...

class Variant(_message.Message):
    __slots__ = ("variant_id", "content", "split_percent", "channel")
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    variant_id: str
    content: Content
    split_percent: float
    channel: _common_pb2.Channel
    def __init__(self, variant_id: _Optional[str] = ..., content: _Optional[_Union[Content, _Mapping]] = ..., split_percent: _Optional[float] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ...) -> None: ...

class FollowUp(_message.Message):
    __slots__ = ("after_touch_id", "wait_seconds", "converted_next_touch_id", "converted_handover_plan", "unconverted_touch_id", "max_repeats", "repeat_spacing_seconds", "converted_handover_touch_id")
    AFTER_TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_NEXT_TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_HANDOVER_PLAN_FIELD_NUMBER: _ClassVar[int]
    UNCONVERTED_TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_REPEATS_FIELD_NUMBER: _ClassVar[int]
    REPEAT_SPACING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_HANDOVER_TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    after_touch_id: str
    wait_seconds: int
    converted_next_touch_id: str
    converted_handover_plan: str
    unconverted_touch_id: str
    max_repeats: int
    repeat_spacing_seconds: int
    converted_handover_touch_id: str
    def __init__(self, after_touch_id: _Optional[str] = ..., wait_seconds: _Optional[int] = ..., converted_next_touch_id: _Optional[str] = ..., converted_handover_plan: _Optional[str] = ..., unconverted_touch_id: _Optional[str] = ..., max_repeats: _Optional[int] = ..., repeat_spacing_seconds: _Optional[int] = ..., converted_handover_touch_id: _Optional[str] = ...) -> None: ...

class CreatePlanRequest(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class CreatePlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class ListPlansRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "states")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[PlanState]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[PlanState, str]]] = ...) -> None: ...

class ListPlansResponse(_message.Message):
    __slots__ = ("plans", "next_page_token")
    PLANS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[Plan]
    next_page_token: str
    def __init__(self, plans: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdatePlanRequest(_message.Message):
    __slots__ = ("plan", "update_mask")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdatePlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class DeletePlanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeletePlanResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SubmitPlanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SubmitPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class ApprovePlanRequest(_message.Message):
    __slots__ = ("name", "content_hash", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    content_hash: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., content_hash: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ApprovePlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class RejectPlanRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RejectPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class SchedulePlanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SchedulePlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class PausePlanRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PausePlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class ResumePlanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumePlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class CancelPlanRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("sequence", "plan", "action", "from_state", "to_state", "actor", "time", "reason", "content_hash", "previous_hash", "entry_hash")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_HASH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    plan: str
    action: str
    from_state: PlanState
    to_state: PlanState
    actor: str
    time: _timestamp_pb2.Timestamp
    reason: str
    content_hash: str
    previous_hash: str
    entry_hash: str
    def __init__(self, sequence: _Optional[int] = ..., plan: _Optional[str] = ..., action: _Optional[str] = ..., from_state: _Optional[_Union[PlanState, str]] = ..., to_state: _Optional[_Union[PlanState, str]] = ..., actor: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., content_hash: _Optional[str] = ..., previous_hash: _Optional[str] = ..., entry_hash: _Optional[str] = ...) -> None: ...

class ListAuditEntriesRequest(_message.Message):
    __slots__ = ("plan", "page_size", "page_token")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    plan: str
    page_size: int
    page_token: str
    def __init__(self, plan: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class VerifyAuditLogRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditLogResponse(_message.Message):
    __slots__ = ("intact", "first_broken_sequence")
    INTACT_FIELD_NUMBER: _ClassVar[int]
    FIRST_BROKEN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    intact: bool
    first_broken_sequence: int
    def __init__(self, intact: _Optional[bool] = ..., first_broken_sequence: _Optional[int] = ...) -> None: ...

class PreviewTouchRequest(_message.Message):
    __slots__ = ("plan", "touch_id", "external_id")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    plan: str
    touch_id: str
    external_id: str
    def __init__(self, plan: _Optional[str] = ..., touch_id: _Optional[str] = ..., external_id: _Optional[str] = ...) -> None: ...

class PreviewTouchResponse(_message.Message):
    __slots__ = ("title", "body", "subject")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    title: str
    body: str
    subject: str
    def __init__(self, title: _Optional[str] = ..., body: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class ReasonCount(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    count: int
    def __init__(self, reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Funnel(_message.Message):
    __slots__ = ("audience", "removed", "deferred", "sent", "failed")
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    audience: int
    removed: _containers.RepeatedCompositeFieldContainer[ReasonCount]
    deferred: _containers.RepeatedCompositeFieldContainer[ReasonCount]
    sent: int
    failed: int
    def __init__(self, audience: _Optional[int] = ..., removed: _Optional[_Iterable[_Union[ReasonCount, _Mapping]]] = ..., deferred: _Optional[_Iterable[_Union[ReasonCount, _Mapping]]] = ..., sent: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class DryRunTouchRequest(_message.Message):
    __slots__ = ("plan", "touch_id")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    plan: str
    touch_id: str
    def __init__(self, plan: _Optional[str] = ..., touch_id: _Optional[str] = ...) -> None: ...

class DryRunTouchResponse(_message.Message):
    __slots__ = ("funnel",)
    FUNNEL_FIELD_NUMBER: _ClassVar[int]
    funnel: Funnel
    def __init__(self, funnel: _Optional[_Union[Funnel, _Mapping]] = ...) -> None: ...

class ExecutePlanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ExecutePlanResponse(_message.Message):
    __slots__ = ("funnel", "plan")
    FUNNEL_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    funnel: Funnel
    plan: Plan
    def __init__(self, funnel: _Optional[_Union[Funnel, _Mapping]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class RunTouchRequest(_message.Message):
    __slots__ = ("plan", "touch_id", "occurrence_key")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRENCE_KEY_FIELD_NUMBER: _ClassVar[int]
    plan: str
    touch_id: str
    occurrence_key: str
    def __init__(self, plan: _Optional[str] = ..., touch_id: _Optional[str] = ..., occurrence_key: _Optional[str] = ...) -> None: ...

class RunTouchResponse(_message.Message):
    __slots__ = ("funnel",)
    FUNNEL_FIELD_NUMBER: _ClassVar[int]
    funnel: Funnel
    def __init__(self, funnel: _Optional[_Union[Funnel, _Mapping]] = ...) -> None: ...

class Send(_message.Message):
    __slots__ = ("touch_id", "occurrence_key", "user_id", "channel", "status", "reason", "attempts", "idempotency_key", "not_before_time", "update_time", "variant_id", "sent_time")
    TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRENCE_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_TIME_FIELD_NUMBER: _ClassVar[int]
    touch_id: str
    occurrence_key: str
    user_id: int
    channel: _common_pb2.Channel
    status: SendStatus
    reason: str
    attempts: int
    idempotency_key: str
    not_before_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    variant_id: str
    sent_time: _timestamp_pb2.Timestamp
    def __init__(self, touch_id: _Optional[str] = ..., occurrence_key: _Optional[str] = ..., user_id: _Optional[int] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., status: _Optional[_Union[SendStatus, str]] = ..., reason: _Optional[str] = ..., attempts: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., not_before_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., variant_id: _Optional[str] = ..., sent_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSendsRequest(_message.Message):
    __slots__ = ("plan", "status", "page_size", "page_token")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    plan: str
    status: SendStatus
    page_size: int
    page_token: str
    def __init__(self, plan: _Optional[str] = ..., status: _Optional[_Union[SendStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSendsResponse(_message.Message):
    __slots__ = ("sends", "next_page_token", "status_counts")
    class StatusCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SENDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    sends: _containers.RepeatedCompositeFieldContainer[Send]
    next_page_token: str
    status_counts: _containers.ScalarMap[str, int]
    def __init__(self, sends: _Optional[_Iterable[_Union[Send, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., status_counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("idempotency_key", "type", "time", "value")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    type: OutcomeType
    time: _timestamp_pb2.Timestamp
    value: float
    def __init__(self, idempotency_key: _Optional[str] = ..., type: _Optional[_Union[OutcomeType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ...) -> None: ...

class ReportOutcomesRequest(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[Outcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[Outcome, _Mapping]]] = ...) -> None: ...

class ReportOutcomesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_common_pb2.ItemResult]
    def __init__(self, results: _Optional[_Iterable[_Union[_common_pb2.ItemResult, _Mapping]]] = ...) -> None: ...

class EffectStats(_message.Message):
    __slots__ = ("touch_id", "variant_id", "channel", "funnel", "delivered", "opened", "clicked", "click_through_rate", "converted", "conversion_rate", "revenue", "unsubscribed", "notification_disabled", "uninstalled", "uplift", "uplift_ci_low", "uplift_ci_high", "hour")
    TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    FUNNEL_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    CLICKED_FIELD_NUMBER: _ClassVar[int]
    CLICK_THROUGH_RATE_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    REVENUE_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_DISABLED_FIELD_NUMBER: _ClassVar[int]
    UNINSTALLED_FIELD_NUMBER: _ClassVar[int]
    UPLIFT_FIELD_NUMBER: _ClassVar[int]
    UPLIFT_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    UPLIFT_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    touch_id: str
    variant_id: str
    channel: _common_pb2.Channel
    funnel: Funnel
    delivered: int
    opened: int
    clicked: int
    click_through_rate: float
    converted: int
    conversion_rate: float
    revenue: float
    unsubscribed: int
    notification_disabled: int
    uninstalled: int
    uplift: float
    uplift_ci_low: float
    uplift_ci_high: float
    hour: _timestamp_pb2.Timestamp
    def __init__(self, touch_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., funnel: _Optional[_Union[Funnel, _Mapping]] = ..., delivered: _Optional[int] = ..., opened: _Optional[int] = ..., clicked: _Optional[int] = ..., click_through_rate: _Optional[float] = ..., converted: _Optional[int] = ..., conversion_rate: _Optional[float] = ..., revenue: _Optional[float] = ..., unsubscribed: _Optional[int] = ..., notification_disabled: _Optional[int] = ..., uninstalled: _Optional[int] = ..., uplift: _Optional[float] = ..., uplift_ci_low: _Optional[float] = ..., uplift_ci_high: _Optional[float] = ..., hour: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetPlanStatsRequest(_message.Message):
    __slots__ = ("plan", "include_hourly_series")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HOURLY_SERIES_FIELD_NUMBER: _ClassVar[int]
    plan: str
    include_hourly_series: bool
    def __init__(self, plan: _Optional[str] = ..., include_hourly_series: _Optional[bool] = ...) -> None: ...

class GetPlanStatsResponse(_message.Message):
    __slots__ = ("totals", "hourly", "control_groups")
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    HOURLY_FIELD_NUMBER: _ClassVar[int]
    CONTROL_GROUPS_FIELD_NUMBER: _ClassVar[int]
    totals: _containers.RepeatedCompositeFieldContainer[EffectStats]
    hourly: _containers.RepeatedCompositeFieldContainer[EffectStats]
    control_groups: _containers.RepeatedCompositeFieldContainer[ControlGroupStats]
    def __init__(self, totals: _Optional[_Iterable[_Union[EffectStats, _Mapping]]] = ..., hourly: _Optional[_Iterable[_Union[EffectStats, _Mapping]]] = ..., control_groups: _Optional[_Iterable[_Union[ControlGroupStats, _Mapping]]] = ...) -> None: ...

class ControlGroupStats(_message.Message):
    __slots__ = ("touch_id", "held_back", "converted", "conversion_rate")
    TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    HELD_BACK_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    touch_id: str
    held_back: int
    converted: int
    conversion_rate: float
    def __init__(self, touch_id: _Optional[str] = ..., held_back: _Optional[int] = ..., converted: _Optional[int] = ..., conversion_rate: _Optional[float] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("plan", "touch_id")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    plan: str
    touch_id: str
    def __init__(self, plan: _Optional[str] = ..., touch_id: _Optional[str] = ...) -> None: ...

class GetExperimentResponse(_message.Message):
    __slots__ = ("variants", "winner_variant_id", "decision", "mode", "probability_best")
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    WINNER_VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_BEST_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedCompositeFieldContainer[EffectStats]
    winner_variant_id: str
    decision: str
    mode: ExperimentMode
    probability_best: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, variants: _Optional[_Iterable[_Union[EffectStats, _Mapping]]] = ..., winner_variant_id: _Optional[str] = ..., decision: _Optional[str] = ..., mode: _Optional[_Union[ExperimentMode, str]] = ..., probability_best: _Optional[_Iterable[float]] = ...) -> None: ...
