from phoneagent.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Answered(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANSWERED_UNSPECIFIED: _ClassVar[Answered]
    ANSWERED_MODEL: _ClassVar[Answered]
    ANSWERED_MODEL_TOOL: _ClassVar[Answered]
    ANSWERED_CODE: _ClassVar[Answered]
    ANSWERED_FALLBACK: _ClassVar[Answered]
ANSWERED_UNSPECIFIED: Answered
ANSWERED_MODEL: Answered
ANSWERED_MODEL_TOOL: Answered
ANSWERED_CODE: Answered
ANSWERED_FALLBACK: Answered

class SpeechStarted(_message.Message):
    __slots__ = ("meta", "speech_start_unix_ns")
    META_FIELD_NUMBER: _ClassVar[int]
    SPEECH_START_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    speech_start_unix_ns: int
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., speech_start_unix_ns: _Optional[int] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("text", "start_ms", "end_ms", "probability")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_ms: int
    end_ms: int
    probability: float
    def __init__(self, text: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., probability: _Optional[float] = ...) -> None: ...

class Transcript(_message.Message):
    __slots__ = ("meta", "final", "text", "confidence", "speech_start_unix_ns", "speech_end_unix_ns", "emitted_unix_ns", "backchannel", "words", "engine", "language", "endpoint_unix_ns", "compute_ms", "preflight")
    META_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SPEECH_START_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_END_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    EMITTED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    BACKCHANNEL_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    PREFLIGHT_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    final: bool
    text: str
    confidence: float
    speech_start_unix_ns: int
    speech_end_unix_ns: int
    emitted_unix_ns: int
    backchannel: bool
    words: _containers.RepeatedCompositeFieldContainer[Word]
    engine: str
    language: str
    endpoint_unix_ns: int
    compute_ms: int
    preflight: bool
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., final: _Optional[bool] = ..., text: _Optional[str] = ..., confidence: _Optional[float] = ..., speech_start_unix_ns: _Optional[int] = ..., speech_end_unix_ns: _Optional[int] = ..., emitted_unix_ns: _Optional[int] = ..., backchannel: _Optional[bool] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., engine: _Optional[str] = ..., language: _Optional[str] = ..., endpoint_unix_ns: _Optional[int] = ..., compute_ms: _Optional[int] = ..., preflight: _Optional[bool] = ...) -> None: ...

class AsrEvent(_message.Message):
    __slots__ = ("speech_started", "transcript", "error")
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    speech_started: SpeechStarted
    transcript: Transcript
    error: _common_pb2.Error
    def __init__(self, speech_started: _Optional[_Union[SpeechStarted, _Mapping]] = ..., transcript: _Optional[_Union[Transcript, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...

class AgentText(_message.Message):
    __slots__ = ("meta", "sentence_seq", "text", "final", "from_policy", "voice", "first_token_unix_ns", "request_unix_ns", "answered_by", "prompt_tokens_evaluated")
    META_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    FROM_POLICY_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    sentence_seq: int
    text: str
    final: bool
    from_policy: bool
    voice: str
    first_token_unix_ns: int
    request_unix_ns: int
    answered_by: Answered
    prompt_tokens_evaluated: int
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., sentence_seq: _Optional[int] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ..., from_policy: _Optional[bool] = ..., voice: _Optional[str] = ..., first_token_unix_ns: _Optional[int] = ..., request_unix_ns: _Optional[int] = ..., answered_by: _Optional[_Union[Answered, str]] = ..., prompt_tokens_evaluated: _Optional[int] = ...) -> None: ...
