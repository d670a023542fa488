from phoneagent.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_INBOUND: _ClassVar[Direction]
    DIRECTION_OUTBOUND: _ClassVar[Direction]

class Transport(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSPORT_UNSPECIFIED: _ClassVar[Transport]
    TRANSPORT_SIP: _ClassVar[Transport]
    TRANSPORT_WEBRTC: _ClassVar[Transport]

class EndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_REASON_UNSPECIFIED: _ClassVar[EndReason]
    END_REASON_CALLER_HANGUP: _ClassVar[EndReason]
    END_REASON_AGENT_HANGUP: _ClassVar[EndReason]
    END_REASON_TRANSFERRED: _ClassVar[EndReason]
    END_REASON_BUSY: _ClassVar[EndReason]
    END_REASON_NO_ANSWER: _ClassVar[EndReason]
    END_REASON_FAILED: _ClassVar[EndReason]
    END_REASON_REJECTED: _ClassVar[EndReason]
    END_REASON_POLICY_DENIED: _ClassVar[EndReason]
    END_REASON_MAX_DURATION: _ClassVar[EndReason]
    END_REASON_ERROR: _ClassVar[EndReason]
    END_REASON_CANCELLED: _ClassVar[EndReason]
    END_REASON_VOICEMAIL: _ClassVar[EndReason]
    END_REASON_OPERATOR_HANGUP: _ClassVar[EndReason]
    END_REASON_MEDIA_TIMEOUT: _ClassVar[EndReason]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_INBOUND: Direction
DIRECTION_OUTBOUND: Direction
TRANSPORT_UNSPECIFIED: Transport
TRANSPORT_SIP: Transport
TRANSPORT_WEBRTC: Transport
END_REASON_UNSPECIFIED: EndReason
END_REASON_CALLER_HANGUP: EndReason
END_REASON_AGENT_HANGUP: EndReason
END_REASON_TRANSFERRED: EndReason
END_REASON_BUSY: EndReason
END_REASON_NO_ANSWER: EndReason
END_REASON_FAILED: EndReason
END_REASON_REJECTED: EndReason
END_REASON_POLICY_DENIED: EndReason
END_REASON_MAX_DURATION: EndReason
END_REASON_ERROR: EndReason
END_REASON_CANCELLED: EndReason
END_REASON_VOICEMAIL: EndReason
END_REASON_OPERATOR_HANGUP: EndReason
END_REASON_MEDIA_TIMEOUT: EndReason

class CallStarted(_message.Message):
    __slots__ = ("meta", "direction", "transport", "from_uri", "to_uri", "agent", "campaign_id", "sample_rate", "codec", "labels", "playout_rate", "dial_decision_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    FROM_URI_FIELD_NUMBER: _ClassVar[int]
    TO_URI_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PLAYOUT_RATE_FIELD_NUMBER: _ClassVar[int]
    DIAL_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    direction: Direction
    transport: Transport
    from_uri: str
    to_uri: str
    agent: str
    campaign_id: str
    sample_rate: int
    codec: str
    labels: _containers.ScalarMap[str, str]
    playout_rate: int
    dial_decision_id: str
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., direction: _Optional[_Union[Direction, str]] = ..., transport: _Optional[_Union[Transport, str]] = ..., from_uri: _Optional[str] = ..., to_uri: _Optional[str] = ..., agent: _Optional[str] = ..., campaign_id: _Optional[str] = ..., sample_rate: _Optional[int] = ..., codec: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., playout_rate: _Optional[int] = ..., dial_decision_id: _Optional[str] = ...) -> None: ...

class CallAnswered(_message.Message):
    __slots__ = ("meta", "codec")
    META_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    codec: str
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., codec: _Optional[str] = ...) -> None: ...

class CallEnded(_message.Message):
    __slots__ = ("meta", "reason", "detail", "duration_ms")
    META_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    reason: EndReason
    detail: str
    duration_ms: int
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., reason: _Optional[_Union[EndReason, str]] = ..., detail: _Optional[str] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class CallEvent(_message.Message):
    __slots__ = ("started", "answered", "ended")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    started: CallStarted
    answered: CallAnswered
    ended: CallEnded
    def __init__(self, started: _Optional[_Union[CallStarted, _Mapping]] = ..., answered: _Optional[_Union[CallAnswered, _Mapping]] = ..., ended: _Optional[_Union[CallEnded, _Mapping]] = ...) -> None: ...
