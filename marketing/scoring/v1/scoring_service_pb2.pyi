import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from marketing.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelTask(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TASK_UNSPECIFIED: _ClassVar[ModelTask]
    MODEL_TASK_CONVERSION: _ClassVar[ModelTask]
    MODEL_TASK_CHURN: _ClassVar[ModelTask]
    MODEL_TASK_LOOKALIKE: _ClassVar[ModelTask]
    MODEL_TASK_OTHER: _ClassVar[ModelTask]

class FeatureSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_SOURCE_UNSPECIFIED: _ClassVar[FeatureSource]
    FEATURE_SOURCE_ATTRIBUTE: _ClassVar[FeatureSource]
    FEATURE_SOURCE_TRAIT: _ClassVar[FeatureSource]
    FEATURE_SOURCE_EVENT: _ClassVar[FeatureSource]

class FeatureType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_TYPE_UNSPECIFIED: _ClassVar[FeatureType]
    FEATURE_TYPE_NUMBER: _ClassVar[FeatureType]
    FEATURE_TYPE_BOOL: _ClassVar[FeatureType]
    FEATURE_TYPE_STRING: _ClassVar[FeatureType]

class EventAggregate(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_AGGREGATE_UNSPECIFIED: _ClassVar[EventAggregate]
    EVENT_AGGREGATE_COUNT: _ClassVar[EventAggregate]
    EVENT_AGGREGATE_SUM: _ClassVar[EventAggregate]
    EVENT_AGGREGATE_DAYS_SINCE_LAST: _ClassVar[EventAggregate]
MODEL_TASK_UNSPECIFIED: ModelTask
MODEL_TASK_CONVERSION: ModelTask
MODEL_TASK_CHURN: ModelTask
MODEL_TASK_LOOKALIKE: ModelTask
MODEL_TASK_OTHER: ModelTask
FEATURE_SOURCE_UNSPECIFIED: FeatureSource
FEATURE_SOURCE_ATTRIBUTE: FeatureSource
FEATURE_SOURCE_TRAIT: FeatureSource
FEATURE_SOURCE_EVENT: FeatureSource
FEATURE_TYPE_UNSPECIFIED: FeatureType
FEATURE_TYPE_NUMBER: FeatureType
FEATURE_TYPE_BOOL: FeatureType
FEATURE_TYPE_STRING: FeatureType
EVENT_AGGREGATE_UNSPECIFIED: EventAggregate
EVENT_AGGREGATE_COUNT: EventAggregate
EVENT_AGGREGATE_SUM: EventAggregate
EVENT_AGGREGATE_DAYS_SINCE_LAST: EventAggregate

class FeatureSpec(_message.Message):
    __slots__ = ("name", "source", "key", "type", "default_value", "aggregate", "window_days", "input")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: FeatureSource
    key: str
    type: FeatureType
    default_value: _common_pb2.Value
    aggregate: EventAggregate
    window_days: int
    input: str
    def __init__(self, name: _Optional[str] = ..., source: _Optional[_Union[FeatureSource, str]] = ..., key: _Optional[str] = ..., type: _Optional[_Union[FeatureType, str]] = ..., default_value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ..., aggregate: _Optional[_Union[EventAggregate, str]] = ..., window_days: _Optional[int] = ..., input: _Optional[str] = ...) -> None: ...

class OutputSpec(_message.Message):
    __slots__ = ("name", "column")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    name: str
    column: int
    def __init__(self, name: _Optional[str] = ..., column: _Optional[int] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "model", "version", "task", "description", "features", "output", "onnx_sha256", "size_bytes", "aliases", "metrics", "lineage", "create_time", "creator")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ONNX_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    version: int
    task: ModelTask
    description: str
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    output: OutputSpec
    onnx_sha256: str
    size_bytes: int
    aliases: _containers.RepeatedScalarFieldContainer[str]
    metrics: ModelMetrics
    lineage: Lineage
    create_time: _timestamp_pb2.Timestamp
    creator: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., task: _Optional[_Union[ModelTask, str]] = ..., description: _Optional[str] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., output: _Optional[_Union[OutputSpec, _Mapping]] = ..., onnx_sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., aliases: _Optional[_Iterable[str]] = ..., metrics: _Optional[_Union[ModelMetrics, _Mapping]] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., creator: _Optional[str] = ...) -> None: ...

class ModelMetrics(_message.Message):
    __slots__ = ("auc", "log_loss", "top_decile_lift", "base_rate", "rows", "positives", "lift", "calibration", "onnx_parity_max_abs_diff", "train_rows", "test_rows")
    AUC_FIELD_NUMBER: _ClassVar[int]
    LOG_LOSS_FIELD_NUMBER: _ClassVar[int]
    TOP_DECILE_LIFT_FIELD_NUMBER: _ClassVar[int]
    BASE_RATE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    POSITIVES_FIELD_NUMBER: _ClassVar[int]
    LIFT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    ONNX_PARITY_MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    TEST_ROWS_FIELD_NUMBER: _ClassVar[int]
    auc: float
    log_loss: float
    top_decile_lift: float
    base_rate: float
    rows: int
    positives: int
    lift: _containers.RepeatedCompositeFieldContainer[LiftRow]
    calibration: _containers.RepeatedCompositeFieldContainer[CalibrationRow]
    onnx_parity_max_abs_diff: float
    train_rows: int
    test_rows: int
    def __init__(self, auc: _Optional[float] = ..., log_loss: _Optional[float] = ..., top_decile_lift: _Optional[float] = ..., base_rate: _Optional[float] = ..., rows: _Optional[int] = ..., positives: _Optional[int] = ..., lift: _Optional[_Iterable[_Union[LiftRow, _Mapping]]] = ..., calibration: _Optional[_Iterable[_Union[CalibrationRow, _Mapping]]] = ..., onnx_parity_max_abs_diff: _Optional[float] = ..., train_rows: _Optional[int] = ..., test_rows: _Optional[int] = ...) -> None: ...

class LiftRow(_message.Message):
    __slots__ = ("decile", "rows", "positives", "response_rate", "lift", "cumulative_gain", "cumulative_lift", "min_score", "max_score")
    DECILE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    POSITIVES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_RATE_FIELD_NUMBER: _ClassVar[int]
    LIFT_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_GAIN_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_LIFT_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_SCORE_FIELD_NUMBER: _ClassVar[int]
    decile: int
    rows: int
    positives: int
    response_rate: float
    lift: float
    cumulative_gain: float
    cumulative_lift: float
    min_score: float
    max_score: float
    def __init__(self, decile: _Optional[int] = ..., rows: _Optional[int] = ..., positives: _Optional[int] = ..., response_rate: _Optional[float] = ..., lift: _Optional[float] = ..., cumulative_gain: _Optional[float] = ..., cumulative_lift: _Optional[float] = ..., min_score: _Optional[float] = ..., max_score: _Optional[float] = ...) -> None: ...

class CalibrationRow(_message.Message):
    __slots__ = ("decile", "rows", "mean_score", "observed_rate")
    DECILE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MEAN_SCORE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_RATE_FIELD_NUMBER: _ClassVar[int]
    decile: int
    rows: int
    mean_score: float
    observed_rate: float
    def __init__(self, decile: _Optional[int] = ..., rows: _Optional[int] = ..., mean_score: _Optional[float] = ..., observed_rate: _Optional[float] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ("cutoff_time", "label", "algorithm", "params", "code_version", "population", "operation")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CodeVersionEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CUTOFF_TIME_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    cutoff_time: _timestamp_pb2.Timestamp
    label: str
    algorithm: str
    params: _containers.ScalarMap[str, str]
    code_version: _containers.ScalarMap[str, str]
    population: int
    operation: str
    def __init__(self, cutoff_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., label: _Optional[str] = ..., algorithm: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., code_version: _Optional[_Mapping[str, str]] = ..., population: _Optional[int] = ..., operation: _Optional[str] = ...) -> None: ...

class RegisterModelVersionRequest(_message.Message):
    __slots__ = ("model", "task", "onnx_model", "features", "output", "description", "metrics")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ONNX_MODEL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    model: str
    task: ModelTask
    onnx_model: bytes
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    output: OutputSpec
    description: str
    metrics: ModelMetrics
    def __init__(self, model: _Optional[str] = ..., task: _Optional[_Union[ModelTask, str]] = ..., onnx_model: _Optional[bytes] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., output: _Optional[_Union[OutputSpec, _Mapping]] = ..., description: _Optional[str] = ..., metrics: _Optional[_Union[ModelMetrics, _Mapping]] = ...) -> None: ...

class RegisterModelVersionResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class GetModelVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelVersionResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class ListModelVersionsRequest(_message.Message):
    __slots__ = ("model", "page_size", "page_token")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model: str
    page_size: int
    page_token: str
    def __init__(self, model: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelVersionsResponse(_message.Message):
    __slots__ = ("model_versions", "next_page_token")
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model_versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    next_page_token: str
    def __init__(self, model_versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteModelVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteModelVersionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "task", "version_count", "latest_version", "aliases")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: ModelTask
    version_count: int
    latest_version: int
    aliases: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., task: _Optional[_Union[ModelTask, str]] = ..., version_count: _Optional[int] = ..., latest_version: _Optional[int] = ..., aliases: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("name", "alias")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("model_version", "previous_version")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    previous_version: int
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., previous_version: _Optional[int] = ...) -> None: ...

class PromoteModelVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PromoteModelVersionResponse(_message.Message):
    __slots__ = ("model_version", "previous_version")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    previous_version: int
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., previous_version: _Optional[int] = ...) -> None: ...

class RollbackAliasRequest(_message.Message):
    __slots__ = ("model", "alias")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model: str
    alias: str
    def __init__(self, model: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class RollbackAliasResponse(_message.Message):
    __slots__ = ("model_version", "rolled_back_version")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    rolled_back_version: int
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., rolled_back_version: _Optional[int] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("segment", "attribute", "tag", "event")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    segment: SegmentLabel
    attribute: AttributeLabel
    tag: str
    event: EventLabel
    def __init__(self, segment: _Optional[_Union[SegmentLabel, _Mapping]] = ..., attribute: _Optional[_Union[AttributeLabel, _Mapping]] = ..., tag: _Optional[str] = ..., event: _Optional[_Union[EventLabel, _Mapping]] = ...) -> None: ...

class SegmentLabel(_message.Message):
    __slots__ = ("external_ids",)
    EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    external_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, external_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AttributeLabel(_message.Message):
    __slots__ = ("name", "operator", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    operator: str
    value: _common_pb2.Value
    def __init__(self, name: _Optional[str] = ..., operator: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...

class EventLabel(_message.Message):
    __slots__ = ("event_type", "within_days")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WITHIN_DAYS_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    within_days: int
    def __init__(self, event_type: _Optional[str] = ..., within_days: _Optional[int] = ...) -> None: ...

class TrainModelRequest(_message.Message):
    __slots__ = ("model", "task", "label", "features", "algorithm", "cutoff_time", "params", "test_fraction", "random_state", "description", "promote")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_TIME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TEST_FRACTION_FIELD_NUMBER: _ClassVar[int]
    RANDOM_STATE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    model: str
    task: ModelTask
    label: Label
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    algorithm: str
    cutoff_time: _timestamp_pb2.Timestamp
    params: _containers.ScalarMap[str, float]
    test_fraction: float
    random_state: int
    description: str
    promote: bool
    def __init__(self, model: _Optional[str] = ..., task: _Optional[_Union[ModelTask, str]] = ..., label: _Optional[_Union[Label, _Mapping]] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., algorithm: _Optional[str] = ..., cutoff_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., params: _Optional[_Mapping[str, float]] = ..., test_fraction: _Optional[float] = ..., random_state: _Optional[int] = ..., description: _Optional[str] = ..., promote: _Optional[bool] = ...) -> None: ...

class TrainModelResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: _common_pb2.Operation
    def __init__(self, operation: _Optional[_Union[_common_pb2.Operation, _Mapping]] = ...) -> None: ...

class TrainingProgress(_message.Message):
    __slots__ = ("stage", "percent", "model", "algorithm")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    stage: str
    percent: int
    model: str
    algorithm: str
    def __init__(self, stage: _Optional[str] = ..., percent: _Optional[int] = ..., model: _Optional[str] = ..., algorithm: _Optional[str] = ...) -> None: ...

class GetOperationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetOperationResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: _common_pb2.Operation
    def __init__(self, operation: _Optional[_Union[_common_pb2.Operation, _Mapping]] = ...) -> None: ...

class ListOperationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOperationsResponse(_message.Message):
    __slots__ = ("operations", "next_page_token")
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Operation]
    next_page_token: str
    def __init__(self, operations: _Optional[_Iterable[_Union[_common_pb2.Operation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelOperationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelOperationResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: _common_pb2.Operation
    def __init__(self, operation: _Optional[_Union[_common_pb2.Operation, _Mapping]] = ...) -> None: ...

class ScoreUsersRequest(_message.Message):
    __slots__ = ("model", "external_ids", "user_ids", "as_of_time")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    model: str
    external_ids: _containers.RepeatedScalarFieldContainer[str]
    user_ids: _containers.RepeatedScalarFieldContainer[int]
    as_of_time: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[str] = ..., external_ids: _Optional[_Iterable[str]] = ..., user_ids: _Optional[_Iterable[int]] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UserScore(_message.Message):
    __slots__ = ("external_id", "user_id", "found", "score")
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    user_id: int
    found: bool
    score: float
    def __init__(self, external_id: _Optional[str] = ..., user_id: _Optional[int] = ..., found: _Optional[bool] = ..., score: _Optional[float] = ...) -> None: ...

class ScoreUsersResponse(_message.Message):
    __slots__ = ("model_version", "scores")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    scores: _containers.RepeatedCompositeFieldContainer[UserScore]
    def __init__(self, model_version: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[UserScore, _Mapping]]] = ...) -> None: ...

class ScoreRowsRequest(_message.Message):
    __slots__ = ("model", "columns", "values", "row_count", "string_columns", "string_values")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    STRING_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    model: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[float]
    row_count: int
    string_columns: _containers.RepeatedScalarFieldContainer[str]
    string_values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[float]] = ..., row_count: _Optional[int] = ..., string_columns: _Optional[_Iterable[str]] = ..., string_values: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoreRowsResponse(_message.Message):
    __slots__ = ("model_version", "scores")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model_version: _Optional[str] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class ScoreSnapshotRequest(_message.Message):
    __slots__ = ("model", "audience", "as_of_time", "chunk_size")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    model: str
    audience: Audience
    as_of_time: _timestamp_pb2.Timestamp
    chunk_size: int
    def __init__(self, model: _Optional[str] = ..., audience: _Optional[_Union[Audience, _Mapping]] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class Audience(_message.Message):
    __slots__ = ("roaring_bitmap", "user_ids", "segment_snapshot")
    ROARING_BITMAP_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    roaring_bitmap: bytes
    user_ids: UserIds
    segment_snapshot: str
    def __init__(self, roaring_bitmap: _Optional[bytes] = ..., user_ids: _Optional[_Union[UserIds, _Mapping]] = ..., segment_snapshot: _Optional[str] = ...) -> None: ...

class UserIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ScoreSnapshotResponse(_message.Message):
    __slots__ = ("model_version", "user_ids", "scores", "missing_user_ids", "segment_snapshot")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MISSING_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    user_ids: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    missing_user_ids: _containers.RepeatedScalarFieldContainer[int]
    segment_snapshot: str
    def __init__(self, model_version: _Optional[str] = ..., user_ids: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., missing_user_ids: _Optional[_Iterable[int]] = ..., segment_snapshot: _Optional[str] = ...) -> None: ...

class WriteBackScoresRequest(_message.Message):
    __slots__ = ("model", "audience", "score_name", "as_of_time")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    SCORE_NAME_FIELD_NUMBER: _ClassVar[int]
    AS_OF_TIME_FIELD_NUMBER: _ClassVar[int]
    model: str
    audience: Audience
    score_name: str
    as_of_time: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[str] = ..., audience: _Optional[_Union[Audience, _Mapping]] = ..., score_name: _Optional[str] = ..., as_of_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WriteBackScoresResponse(_message.Message):
    __slots__ = ("model_version", "score_name", "scored_count", "written_count", "missing_count")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORE_NAME_FIELD_NUMBER: _ClassVar[int]
    SCORED_COUNT_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    MISSING_COUNT_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    score_name: str
    scored_count: int
    written_count: int
    missing_count: int
    def __init__(self, model_version: _Optional[str] = ..., score_name: _Optional[str] = ..., scored_count: _Optional[int] = ..., written_count: _Optional[int] = ..., missing_count: _Optional[int] = ...) -> None: ...

class EvaluateModelRequest(_message.Message):
    __slots__ = ("model", "label", "cutoff_time")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_TIME_FIELD_NUMBER: _ClassVar[int]
    model: str
    label: Label
    cutoff_time: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[str] = ..., label: _Optional[_Union[Label, _Mapping]] = ..., cutoff_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EvaluateModelResponse(_message.Message):
    __slots__ = ("model_version", "metrics")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    metrics: ModelMetrics
    def __init__(self, model_version: _Optional[str] = ..., metrics: _Optional[_Union[ModelMetrics, _Mapping]] = ...) -> None: ...
