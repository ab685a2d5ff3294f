import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from marketing.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SendStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEND_STATUS_UNSPECIFIED: _ClassVar[SendStatus]
    SEND_STATUS_ACCEPTED: _ClassVar[SendStatus]
    SEND_STATUS_DUPLICATE: _ClassVar[SendStatus]
    SEND_STATUS_RETRYABLE_FAILURE: _ClassVar[SendStatus]
    SEND_STATUS_PERMANENT_FAILURE: _ClassVar[SendStatus]
SEND_STATUS_UNSPECIFIED: SendStatus
SEND_STATUS_ACCEPTED: SendStatus
SEND_STATUS_DUPLICATE: SendStatus
SEND_STATUS_RETRYABLE_FAILURE: SendStatus
SEND_STATUS_PERMANENT_FAILURE: SendStatus

class OutboundMessage(_message.Message):
    __slots__ = ("idempotency_key", "channel", "recipient_external_id", "address", "title", "body", "subject", "data", "plan", "touch_id")
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TOUCH_ID_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    channel: _common_pb2.Channel
    recipient_external_id: str
    address: str
    title: str
    body: str
    subject: str
    data: _containers.ScalarMap[str, str]
    plan: str
    touch_id: str
    def __init__(self, idempotency_key: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., recipient_external_id: _Optional[str] = ..., address: _Optional[str] = ..., title: _Optional[str] = ..., body: _Optional[str] = ..., subject: _Optional[str] = ..., data: _Optional[_Mapping[str, str]] = ..., plan: _Optional[str] = ..., touch_id: _Optional[str] = ...) -> None: ...

class SendBatchRequest(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[OutboundMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[OutboundMessage, _Mapping]]] = ...) -> None: ...

class MessageResult(_message.Message):
    __slots__ = ("idempotency_key", "status", "vendor_message_id", "error_message", "retry_after")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VENDOR_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    status: SendStatus
    vendor_message_id: str
    error_message: str
    retry_after: _duration_pb2.Duration
    def __init__(self, idempotency_key: _Optional[str] = ..., status: _Optional[_Union[SendStatus, str]] = ..., vendor_message_id: _Optional[str] = ..., error_message: _Optional[str] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SendBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[MessageResult]
    def __init__(self, results: _Optional[_Iterable[_Union[MessageResult, _Mapping]]] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("channels", "max_batch_size", "vendor")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[_common_pb2.Channel]
    max_batch_size: int
    vendor: str
    def __init__(self, channels: _Optional[_Iterable[_Union[_common_pb2.Channel, str]]] = ..., max_batch_size: _Optional[int] = ..., vendor: _Optional[str] = ...) -> None: ...
