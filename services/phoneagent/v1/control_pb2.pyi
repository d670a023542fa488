from phoneagent.v1 import call_pb2 as _call_pb2
from phoneagent.v1 import common_pb2 as _common_pb2
from phoneagent.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransferKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_KIND_UNSPECIFIED: _ClassVar[TransferKind]
    TRANSFER_KIND_BLIND: _ClassVar[TransferKind]
    TRANSFER_KIND_WARM: _ClassVar[TransferKind]

class DirectiveAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTIVE_ACTION_UNSPECIFIED: _ClassVar[DirectiveAction]
    DIRECTIVE_ACTION_SAY_AND_HANG_UP: _ClassVar[DirectiveAction]
    DIRECTIVE_ACTION_SAY_AND_TRANSFER: _ClassVar[DirectiveAction]
    DIRECTIVE_ACTION_SAY: _ClassVar[DirectiveAction]
    DIRECTIVE_ACTION_TAKE_MESSAGE: _ClassVar[DirectiveAction]
    DIRECTIVE_ACTION_SAY_AS_ANSWER: _ClassVar[DirectiveAction]
TRANSFER_KIND_UNSPECIFIED: TransferKind
TRANSFER_KIND_BLIND: TransferKind
TRANSFER_KIND_WARM: TransferKind
DIRECTIVE_ACTION_UNSPECIFIED: DirectiveAction
DIRECTIVE_ACTION_SAY_AND_HANG_UP: DirectiveAction
DIRECTIVE_ACTION_SAY_AND_TRANSFER: DirectiveAction
DIRECTIVE_ACTION_SAY: DirectiveAction
DIRECTIVE_ACTION_TAKE_MESSAGE: DirectiveAction
DIRECTIVE_ACTION_SAY_AS_ANSWER: DirectiveAction

class BargeIn(_message.Message):
    __slots__ = ("interrupted_generation_id", "played_ms", "heard_sentence_seq", "heard_text_chars")
    INTERRUPTED_GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAYED_MS_FIELD_NUMBER: _ClassVar[int]
    HEARD_SENTENCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    HEARD_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    interrupted_generation_id: int
    played_ms: int
    heard_sentence_seq: int
    heard_text_chars: int
    def __init__(self, interrupted_generation_id: _Optional[int] = ..., played_ms: _Optional[int] = ..., heard_sentence_seq: _Optional[int] = ..., heard_text_chars: _Optional[int] = ...) -> None: ...

class CancelGeneration(_message.Message):
    __slots__ = ("generation_id", "reason")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    generation_id: int
    reason: str
    def __init__(self, generation_id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class PlaybackDone(_message.Message):
    __slots__ = ("generation_id", "played_ms")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAYED_MS_FIELD_NUMBER: _ClassVar[int]
    generation_id: int
    played_ms: int
    def __init__(self, generation_id: _Optional[int] = ..., played_ms: _Optional[int] = ...) -> None: ...

class Hangup(_message.Message):
    __slots__ = ("reason", "detail")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: _call_pb2.EndReason
    detail: str
    def __init__(self, reason: _Optional[_Union[_call_pb2.EndReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("target", "kind", "summary", "reason", "approval")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    target: str
    kind: TransferKind
    summary: str
    reason: str
    approval: _policy_pb2.Approval
    def __init__(self, target: _Optional[str] = ..., kind: _Optional[_Union[TransferKind, str]] = ..., summary: _Optional[str] = ..., reason: _Optional[str] = ..., approval: _Optional[_Union[_policy_pb2.Approval, _Mapping]] = ...) -> None: ...

class TransferResult(_message.Message):
    __slots__ = ("ok", "detail")
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    detail: str
    def __init__(self, ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class Dtmf(_message.Message):
    __slots__ = ("digit", "duration_ms", "outbound")
    DIGIT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    digit: str
    duration_ms: int
    outbound: bool
    def __init__(self, digit: _Optional[str] = ..., duration_ms: _Optional[int] = ..., outbound: _Optional[bool] = ...) -> None: ...

class PolicyDirective(_message.Message):
    __slots__ = ("action", "text", "target", "rule", "turn_id")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    action: DirectiveAction
    text: str
    target: str
    rule: str
    turn_id: int
    def __init__(self, action: _Optional[_Union[DirectiveAction, str]] = ..., text: _Optional[str] = ..., target: _Optional[str] = ..., rule: _Optional[str] = ..., turn_id: _Optional[int] = ...) -> None: ...

class ControlEvent(_message.Message):
    __slots__ = ("meta", "barge_in", "cancel", "playback_done", "hangup", "transfer", "transfer_result", "dtmf", "error", "directive")
    META_FIELD_NUMBER: _ClassVar[int]
    BARGE_IN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_DONE_FIELD_NUMBER: _ClassVar[int]
    HANGUP_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_RESULT_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    barge_in: BargeIn
    cancel: CancelGeneration
    playback_done: PlaybackDone
    hangup: Hangup
    transfer: Transfer
    transfer_result: TransferResult
    dtmf: Dtmf
    error: _common_pb2.Error
    directive: PolicyDirective
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., barge_in: _Optional[_Union[BargeIn, _Mapping]] = ..., cancel: _Optional[_Union[CancelGeneration, _Mapping]] = ..., playback_done: _Optional[_Union[PlaybackDone, _Mapping]] = ..., hangup: _Optional[_Union[Hangup, _Mapping]] = ..., transfer: _Optional[_Union[Transfer, _Mapping]] = ..., transfer_result: _Optional[_Union[TransferResult, _Mapping]] = ..., dtmf: _Optional[_Union[Dtmf, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ..., directive: _Optional[_Union[PolicyDirective, _Mapping]] = ...) -> None: ...
