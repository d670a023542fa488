from phoneagent.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_ALLOW: _ClassVar[Decision]
    DECISION_DENY: _ClassVar[Decision]
DECISION_UNSPECIFIED: Decision
DECISION_ALLOW: Decision
DECISION_DENY: Decision

class PolicyDecision(_message.Message):
    __slots__ = ("meta", "decision_id", "decision", "subject", "rule", "reason", "details", "decided_unix_ns", "number_hint", "campaign_id", "approval")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    NUMBER_HINT_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    decision_id: str
    decision: Decision
    subject: str
    rule: str
    reason: str
    details: _containers.ScalarMap[str, str]
    decided_unix_ns: int
    number_hint: str
    campaign_id: str
    approval: Approval
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., decision_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., subject: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ..., decided_unix_ns: _Optional[int] = ..., number_hint: _Optional[str] = ..., campaign_id: _Optional[str] = ..., approval: _Optional[_Union[Approval, _Mapping]] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("action", "decision_id", "call_id", "target", "decision", "expires_unix_ms", "key_id", "signature")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    action: str
    decision_id: str
    call_id: str
    target: str
    decision: str
    expires_unix_ms: int
    key_id: str
    signature: bytes
    def __init__(self, action: _Optional[str] = ..., decision_id: _Optional[str] = ..., call_id: _Optional[str] = ..., target: _Optional[str] = ..., decision: _Optional[str] = ..., expires_unix_ms: _Optional[int] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class DialCheck(_message.Message):
    __slots__ = ("number", "time_zone", "campaign_id", "purpose", "caller_id")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CALLER_ID_FIELD_NUMBER: _ClassVar[int]
    number: str
    time_zone: str
    campaign_id: str
    purpose: str
    caller_id: str
    def __init__(self, number: _Optional[str] = ..., time_zone: _Optional[str] = ..., campaign_id: _Optional[str] = ..., purpose: _Optional[str] = ..., caller_id: _Optional[str] = ...) -> None: ...

class TransferCheck(_message.Message):
    __slots__ = ("target", "reason")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    target: str
    reason: str
    def __init__(self, target: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
