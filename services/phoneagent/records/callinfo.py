"""A stored :class:`CallRecord` as the control API's ``CallInfo`` message.

The record keeps enums as lower-case words ("inbound", "caller_hangup", "allow"); the wire
message has the proto enums back. Numbers and texts are already redacted in the record; the
remote hint is masked again so that it stays redacted when full numbers are kept.
"""

from __future__ import annotations

from typing import Any

from phoneagent.records.builder import CallRecord
from phoneagent.runtime.redact import mask_number
from phoneagent.v1 import call_pb2, control_api_pb2, policy_pb2, records_pb2


def _enum_value(enum: Any, prefix: str, word: str) -> Any:
    """The enum value named by ``word`` (0, unspecified, for an unknown word)."""
    try:
        return enum.Value(prefix + word.upper())
    except ValueError:
        return 0


def _remote_hint(rec: CallRecord) -> str:
    remote = rec.to_number if rec.direction == "outbound" else rec.from_number
    if remote.startswith("…"):
        return remote
    return mask_number(remote.split("@", 1)[0])


def _turns(rec: CallRecord) -> list[control_api_pb2.CallTurn]:
    return [
        control_api_pb2.CallTurn(
            role=t.role, turn_id=t.turn_id, text=t.text, ts_unix_ns=t.ts_unix_ns, latency_ms=t.latency_ms
        )
        for t in rec.turns
    ]


def _tools(rec: CallRecord) -> list[control_api_pb2.ToolUse]:
    return [
        control_api_pb2.ToolUse(
            tool_call_id=str(t.get("tool_call_id", "")),
            name=str(t.get("name", "")),
            arguments_json=str(t.get("arguments", "")),
            ok=bool(t.get("ok", False)),
            result_json=str(t.get("result", "")),
            status=str(t.get("status", "")),
            duration_ms=int(t.get("duration_ms", 0) or 0),
            ts_unix_ns=int(t.get("ts_unix_ns", 0) or 0),
        )
        for t in rec.tools
    ]


def _decisions(rec: CallRecord) -> list[control_api_pb2.DecisionRecord]:
    return [
        control_api_pb2.DecisionRecord(
            decision_id=str(d.get("decision_id", "")),
            decision=_enum_value(policy_pb2.Decision, "DECISION_", str(d.get("decision", ""))),
            subject=str(d.get("subject", "")),
            rule=str(d.get("rule", "")),
            reason=str(d.get("reason", "")),
            ts_unix_ns=int(d.get("ts_unix_ns", 0) or 0),
        )
        for d in rec.decisions
    ]


def _recording(rec: CallRecord) -> control_api_pb2.RecordingInfo | None:
    r = rec.recording
    if not r.get("uri"):
        return None
    return control_api_pb2.RecordingInfo(
        uri=str(r["uri"]),
        format=str(r.get("format", "")),
        duration_ms=int(r.get("duration_ms", 0) or 0),
        size_bytes=int(r.get("size_bytes", 0) or 0),
        sha256=str(r.get("sha256", "")),
    )


def _summary(rec: CallRecord) -> records_pb2.CallSummary | None:
    s = rec.summary
    if not s.get("summary"):
        return None
    fields = s.get("fields") if isinstance(s.get("fields"), dict) else {}
    return records_pb2.CallSummary(
        call_id=rec.call_id,
        summary=str(s["summary"]),
        intent=str(s.get("intent", "")),
        outcome=str(s.get("outcome", "")),
        fields={str(k): str(v) for k, v in (fields or {}).items()},
    )


def to_call_info(rec: CallRecord, details: bool = True) -> control_api_pb2.CallInfo:
    """The record as a ``CallInfo``; ``details=False`` leaves out turns, tools, transfers and
    decisions (for long listings)."""
    info = control_api_pb2.CallInfo(
        call_id=rec.call_id,
        direction=_enum_value(call_pb2.Direction, "DIRECTION_", rec.direction),
        transport=_enum_value(call_pb2.Transport, "TRANSPORT_", rec.transport),
        remote_hint=_remote_hint(rec),
        agent=rec.agent,
        started_unix_ns=rec.started_unix_ns,
        answered_unix_ns=rec.answered_unix_ns,
        ended_unix_ns=rec.ended_unix_ns,
        end_reason=_enum_value(call_pb2.EndReason, "END_REASON_", rec.end_reason),
        campaign_id=rec.campaign_id,
        from_number=rec.from_number,
        to_number=rec.to_number,
        end_detail=rec.end_detail,
        duration_ms=rec.duration_ms,
        outcome=rec.outcome,
    )
    recording, summary = _recording(rec), _summary(rec)
    if recording is not None:
        info.recording.CopyFrom(recording)
    if summary is not None:
        info.summary.CopyFrom(summary)
    if details:
        info.turns.extend(_turns(rec))
        info.tools.extend(_tools(rec))
        info.transfers.extend(
            control_api_pb2.TransferRecord(
                source=str(t.get("source", "")), ts_unix_ns=int(t.get("ts_unix_ns", 0) or 0)
            )
            for t in rec.transfers
        )
        info.decisions.extend(_decisions(rec))
    return info
