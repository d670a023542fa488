from phoneagent.v1 import call_pb2 as _call_pb2
from phoneagent.v1 import policy_pb2 as _policy_pb2
from phoneagent.v1 import records_pb2 as _records_pb2
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
    __slots__ = ("active_only", "limit", "omit_details")
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OMIT_DETAILS_FIELD_NUMBER: _ClassVar[int]
    active_only: bool
    limit: int
    omit_details: bool
    def __init__(self, active_only: _Optional[bool] = ..., limit: _Optional[int] = ..., omit_details: _Optional[bool] = ...) -> None: ...

class GetCallRequest(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class CallInfo(_message.Message):
    __slots__ = ("call_id", "direction", "transport", "remote_hint", "agent", "started_unix_ns", "answered_unix_ns", "ended_unix_ns", "end_reason", "campaign_id", "from_number", "to_number", "end_detail", "duration_ms", "outcome", "turns", "tools", "transfers", "decisions", "recording", "summary")
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
    FROM_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TO_NUMBER_FIELD_NUMBER: _ClassVar[int]
    END_DETAIL_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
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
    from_number: str
    to_number: str
    end_detail: str
    duration_ms: int
    outcome: str
    turns: _containers.RepeatedCompositeFieldContainer[CallTurn]
    tools: _containers.RepeatedCompositeFieldContainer[ToolUse]
    transfers: _containers.RepeatedCompositeFieldContainer[TransferRecord]
    decisions: _containers.RepeatedCompositeFieldContainer[DecisionRecord]
    recording: RecordingInfo
    summary: _records_pb2.CallSummary
    def __init__(self, call_id: _Optional[str] = ..., direction: _Optional[_Union[_call_pb2.Direction, str]] = ..., transport: _Optional[_Union[_call_pb2.Transport, str]] = ..., remote_hint: _Optional[str] = ..., agent: _Optional[str] = ..., started_unix_ns: _Optional[int] = ..., answered_unix_ns: _Optional[int] = ..., ended_unix_ns: _Optional[int] = ..., end_reason: _Optional[_Union[_call_pb2.EndReason, str]] = ..., campaign_id: _Optional[str] = ..., from_number: _Optional[str] = ..., to_number: _Optional[str] = ..., end_detail: _Optional[str] = ..., duration_ms: _Optional[int] = ..., outcome: _Optional[str] = ..., turns: _Optional[_Iterable[_Union[CallTurn, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[ToolUse, _Mapping]]] = ..., transfers: _Optional[_Iterable[_Union[TransferRecord, _Mapping]]] = ..., decisions: _Optional[_Iterable[_Union[DecisionRecord, _Mapping]]] = ..., recording: _Optional[_Union[RecordingInfo, _Mapping]] = ..., summary: _Optional[_Union[_records_pb2.CallSummary, _Mapping]] = ...) -> None: ...

class CallTurn(_message.Message):
    __slots__ = ("role", "turn_id", "text", "ts_unix_ns", "latency_ms")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TS_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    role: str
    turn_id: int
    text: str
    ts_unix_ns: int
    latency_ms: int
    def __init__(self, role: _Optional[str] = ..., turn_id: _Optional[int] = ..., text: _Optional[str] = ..., ts_unix_ns: _Optional[int] = ..., latency_ms: _Optional[int] = ...) -> None: ...

class ToolUse(_message.Message):
    __slots__ = ("tool_call_id", "name", "arguments_json", "ok", "result_json", "status", "duration_ms", "ts_unix_ns")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    TS_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    name: str
    arguments_json: str
    ok: bool
    result_json: str
    status: str
    duration_ms: int
    ts_unix_ns: int
    def __init__(self, tool_call_id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ..., ok: _Optional[bool] = ..., result_json: _Optional[str] = ..., status: _Optional[str] = ..., duration_ms: _Optional[int] = ..., ts_unix_ns: _Optional[int] = ...) -> None: ...

class TransferRecord(_message.Message):
    __slots__ = ("source", "ts_unix_ns")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TS_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    source: str
    ts_unix_ns: int
    def __init__(self, source: _Optional[str] = ..., ts_unix_ns: _Optional[int] = ...) -> None: ...

class DecisionRecord(_message.Message):
    __slots__ = ("decision_id", "decision", "subject", "rule", "reason", "ts_unix_ns")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TS_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    decision: _policy_pb2.Decision
    subject: str
    rule: str
    reason: str
    ts_unix_ns: int
    def __init__(self, decision_id: _Optional[str] = ..., decision: _Optional[_Union[_policy_pb2.Decision, str]] = ..., subject: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., ts_unix_ns: _Optional[int] = ...) -> None: ...

class RecordingInfo(_message.Message):
    __slots__ = ("uri", "format", "duration_ms", "size_bytes", "sha256")
    URI_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    uri: str
    format: str
    duration_ms: int
    size_bytes: int
    sha256: str
    def __init__(self, uri: _Optional[str] = ..., format: _Optional[str] = ..., duration_ms: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ListCallsResponse(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[CallInfo]
    def __init__(self, calls: _Optional[_Iterable[_Union[CallInfo, _Mapping]]] = ...) -> None: ...

class StartCampaignRequest(_message.Message):
    __slots__ = ("contacts_csv", "purpose", "campaign_id", "max_concurrent", "calls_per_minute", "max_attempts", "retry_after_s", "amd", "voicemail_message", "agent")
    CONTACTS_CSV_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    CALLS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    AMD_FIELD_NUMBER: _ClassVar[int]
    VOICEMAIL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    contacts_csv: str
    purpose: str
    campaign_id: str
    max_concurrent: int
    calls_per_minute: int
    max_attempts: int
    retry_after_s: int
    amd: str
    voicemail_message: str
    agent: str
    def __init__(self, contacts_csv: _Optional[str] = ..., purpose: _Optional[str] = ..., campaign_id: _Optional[str] = ..., max_concurrent: _Optional[int] = ..., calls_per_minute: _Optional[int] = ..., max_attempts: _Optional[int] = ..., retry_after_s: _Optional[int] = ..., amd: _Optional[str] = ..., voicemail_message: _Optional[str] = ..., agent: _Optional[str] = ...) -> None: ...

class CampaignRowError(_message.Message):
    __slots__ = ("row", "reason")
    ROW_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    row: int
    reason: str
    def __init__(self, row: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CampaignStatus(_message.Message):
    __slots__ = ("campaign_id", "state", "contacts", "outcomes", "pending", "rejected_rows")
    class OutcomesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    REJECTED_ROWS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    state: str
    contacts: int
    outcomes: _containers.ScalarMap[str, int]
    pending: int
    rejected_rows: _containers.RepeatedCompositeFieldContainer[CampaignRowError]
    def __init__(self, campaign_id: _Optional[str] = ..., state: _Optional[str] = ..., contacts: _Optional[int] = ..., outcomes: _Optional[_Mapping[str, int]] = ..., pending: _Optional[int] = ..., rejected_rows: _Optional[_Iterable[_Union[CampaignRowError, _Mapping]]] = ...) -> None: ...

class GetCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class ExportCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class ExportCampaignResponse(_message.Message):
    __slots__ = ("csv",)
    CSV_FIELD_NUMBER: _ClassVar[int]
    csv: str
    def __init__(self, csv: _Optional[str] = ...) -> None: ...

class CancelCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...
