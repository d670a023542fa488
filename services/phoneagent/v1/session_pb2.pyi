from phoneagent.v1 import call_pb2 as _call_pb2
from phoneagent.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionClaim(_message.Message):
    __slots__ = ("stage", "call")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    stage: str
    call: _call_pb2.CallStarted
    def __init__(self, stage: _Optional[str] = ..., call: _Optional[_Union[_call_pb2.CallStarted, _Mapping]] = ...) -> None: ...

class SessionAssigned(_message.Message):
    __slots__ = ("stage", "call_id", "replica_id", "existing", "error")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stage: str
    call_id: str
    replica_id: str
    existing: bool
    error: _common_pb2.Error
    def __init__(self, stage: _Optional[str] = ..., call_id: _Optional[str] = ..., replica_id: _Optional[str] = ..., existing: _Optional[bool] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...

class SessionRecord(_message.Message):
    __slots__ = ("replica_id", "claim", "claimed_unix_ns", "takeovers")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    TAKEOVERS_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    claim: SessionClaim
    claimed_unix_ns: int
    takeovers: int
    def __init__(self, replica_id: _Optional[str] = ..., claim: _Optional[_Union[SessionClaim, _Mapping]] = ..., claimed_unix_ns: _Optional[int] = ..., takeovers: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("stage", "replica_id", "ts_unix_ns", "call_ids", "draining", "capacity")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    TS_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    CALL_IDS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    stage: str
    replica_id: str
    ts_unix_ns: int
    call_ids: _containers.RepeatedScalarFieldContainer[str]
    draining: bool
    capacity: int
    def __init__(self, stage: _Optional[str] = ..., replica_id: _Optional[str] = ..., ts_unix_ns: _Optional[int] = ..., call_ids: _Optional[_Iterable[str]] = ..., draining: _Optional[bool] = ..., capacity: _Optional[int] = ...) -> None: ...
