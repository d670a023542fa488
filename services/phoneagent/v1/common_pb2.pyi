from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_KIND_UNSPECIFIED: _ClassVar[ErrorKind]
    ERROR_KIND_INVALID_ARGUMENT: _ClassVar[ErrorKind]
    ERROR_KIND_UNAVAILABLE: _ClassVar[ErrorKind]
    ERROR_KIND_TIMEOUT: _ClassVar[ErrorKind]
    ERROR_KIND_OVERLOADED: _ClassVar[ErrorKind]
    ERROR_KIND_NOT_FOUND: _ClassVar[ErrorKind]
    ERROR_KIND_MODEL_UNAVAILABLE: _ClassVar[ErrorKind]
    ERROR_KIND_ENGINE_FAILURE: _ClassVar[ErrorKind]
    ERROR_KIND_POLICY_DENIED: _ClassVar[ErrorKind]
    ERROR_KIND_CANCELLED: _ClassVar[ErrorKind]
    ERROR_KIND_INTERNAL: _ClassVar[ErrorKind]
ERROR_KIND_UNSPECIFIED: ErrorKind
ERROR_KIND_INVALID_ARGUMENT: ErrorKind
ERROR_KIND_UNAVAILABLE: ErrorKind
ERROR_KIND_TIMEOUT: ErrorKind
ERROR_KIND_OVERLOADED: ErrorKind
ERROR_KIND_NOT_FOUND: ErrorKind
ERROR_KIND_MODEL_UNAVAILABLE: ErrorKind
ERROR_KIND_ENGINE_FAILURE: ErrorKind
ERROR_KIND_POLICY_DENIED: ErrorKind
ERROR_KIND_CANCELLED: ErrorKind
ERROR_KIND_INTERNAL: ErrorKind

class EventMeta(_message.Message):
    __slots__ = ("call_id", "turn_id", "generation_id", "ts_unix_ns", "producer")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TS_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    turn_id: int
    generation_id: int
    ts_unix_ns: int
    producer: str
    def __init__(self, call_id: _Optional[str] = ..., turn_id: _Optional[int] = ..., generation_id: _Optional[int] = ..., ts_unix_ns: _Optional[int] = ..., producer: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("kind", "retryable", "message", "source")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    kind: ErrorKind
    retryable: bool
    message: str
    source: str
    def __init__(self, kind: _Optional[_Union[ErrorKind, str]] = ..., retryable: _Optional[bool] = ..., message: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...
