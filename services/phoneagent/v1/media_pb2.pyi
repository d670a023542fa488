from phoneagent.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioFrame(_message.Message):
    __slots__ = ("meta", "sequence", "pcm", "sample_rate", "capture_unix_ns", "concealed")
    META_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    CONCEALED_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    sequence: int
    pcm: bytes
    sample_rate: int
    capture_unix_ns: int
    concealed: bool
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., sequence: _Optional[int] = ..., pcm: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., capture_unix_ns: _Optional[int] = ..., concealed: _Optional[bool] = ...) -> None: ...

class SpeechChunk(_message.Message):
    __slots__ = ("meta", "sequence", "pcm", "sample_rate", "sentence_seq", "text_start", "text_end", "last_in_sentence", "last_in_generation", "synth_ms")
    META_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_START_FIELD_NUMBER: _ClassVar[int]
    TEXT_END_FIELD_NUMBER: _ClassVar[int]
    LAST_IN_SENTENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_IN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    SYNTH_MS_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    sequence: int
    pcm: bytes
    sample_rate: int
    sentence_seq: int
    text_start: int
    text_end: int
    last_in_sentence: bool
    last_in_generation: bool
    synth_ms: int
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., sequence: _Optional[int] = ..., pcm: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., sentence_seq: _Optional[int] = ..., text_start: _Optional[int] = ..., text_end: _Optional[int] = ..., last_in_sentence: _Optional[bool] = ..., last_in_generation: _Optional[bool] = ..., synth_ms: _Optional[int] = ...) -> None: ...

class RecordingStored(_message.Message):
    __slots__ = ("meta", "uri", "format", "sample_rate", "duration_ms", "size_bytes", "sha256", "incomplete_reason")
    META_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_REASON_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    uri: str
    format: str
    sample_rate: int
    duration_ms: int
    size_bytes: int
    sha256: str
    incomplete_reason: str
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., uri: _Optional[str] = ..., format: _Optional[str] = ..., sample_rate: _Optional[int] = ..., duration_ms: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., incomplete_reason: _Optional[str] = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("meta", "text", "sample_rate", "max_seconds")
    META_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    text: str
    sample_rate: int
    max_seconds: float
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., text: _Optional[str] = ..., sample_rate: _Optional[int] = ..., max_seconds: _Optional[float] = ...) -> None: ...

class RenderReply(_message.Message):
    __slots__ = ("meta", "pcm", "sample_rate", "error")
    META_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    pcm: bytes
    sample_rate: int
    error: _common_pb2.Error
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., pcm: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...

class Playout(_message.Message):
    __slots__ = ("meta", "caller_stop_unix_ns", "tts_first_audio_unix_ns", "tts_synth_ms", "first_packet_unix_ns", "interrupted", "played_ms", "heard_sentence_seq", "heard_text_chars")
    META_FIELD_NUMBER: _ClassVar[int]
    CALLER_STOP_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    TTS_FIRST_AUDIO_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    TTS_SYNTH_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_PACKET_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    PLAYED_MS_FIELD_NUMBER: _ClassVar[int]
    HEARD_SENTENCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    HEARD_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    caller_stop_unix_ns: int
    tts_first_audio_unix_ns: int
    tts_synth_ms: int
    first_packet_unix_ns: int
    interrupted: bool
    played_ms: int
    heard_sentence_seq: int
    heard_text_chars: int
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., caller_stop_unix_ns: _Optional[int] = ..., tts_first_audio_unix_ns: _Optional[int] = ..., tts_synth_ms: _Optional[int] = ..., first_packet_unix_ns: _Optional[int] = ..., interrupted: _Optional[bool] = ..., played_ms: _Optional[int] = ..., heard_sentence_seq: _Optional[int] = ..., heard_text_chars: _Optional[int] = ...) -> None: ...
