from phoneagent.v1 import call_pb2 as _call_pb2
from phoneagent.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlaceCallRequest(_message.Message):
    __slots__ = ("to", "time_zone", "campaign_id", "purpose", "agent", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TO_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    to: str
    time_zone: str
    campaign_id: str
    purpose: str
    agent: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, to: _Optional[str] = ..., time_zone: _Optional[str] = ..., campaign_id: _Optional[str] = ..., purpose: _Optional[str] = ..., agent: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PlaceCallResponse(_message.Message):
    __slots__ = ("call_id", "decision")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    decision: _policy_pb2.PolicyDecision
    def __init__(self, call_id: _Optional[str] = ..., decision: _Optional[_Union[_policy_pb2.PolicyDecision, _Mapping]] = ...) -> None: ...

class HangUpRequest(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class HangUpResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TransferCallRequest(_message.Message):
    __slots__ = ("call_id", "target", "warm")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WARM_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    target: str
    warm: bool
    def __init__(self, call_id: _Optional[str] = ..., target: _Optional[str] = ..., warm: _Optional[bool] = ...) -> None: ...

class TransferCallResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCallsRequest(_message.Message):
    __slots__ = ("active_only", "limit")
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    active_only: bool
    limit: int
    def __init__(self, active_only: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class GetCallRequest(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class CallInfo(_message.Message):
    __slots__ = ("call_id", "direction", "transport", "remote_hint", "agent", "started_unix_ns", "answered_unix_ns", "ended_unix_ns", "end_reason", "campaign_id")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    REMOTE_HINT_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    ENDED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    direction: _call_pb2.Direction
    transport: _call_pb2.Transport
    remote_hint: str
    agent: str
    started_unix_ns: int
    answered_unix_ns: int
    ended_unix_ns: int
    end_reason: _call_pb2.EndReason
    campaign_id: str
    def __init__(self, call_id: _Optional[str] = ..., direction: _Optional[_Union[_call_pb2.Direction, str]] = ..., transport: _Optional[_Union[_call_pb2.Transport, str]] = ..., remote_hint: _Optional[str] = ..., agent: _Optional[str] = ..., started_unix_ns: _Optional[int] = ..., answered_unix_ns: _Optional[int] = ..., ended_unix_ns: _Optional[int] = ..., end_reason: _Optional[_Union[_call_pb2.EndReason, str]] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class ListCallsResponse(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[CallInfo]
    def __init__(self, calls: _Optional[_Iterable[_Union[CallInfo, _Mapping]]] = ...) -> None: ...
