"""What the console's pages show, computed from stored call records and audit decisions.

Pure functions: the app reads the store and the audit stream, these shape the result for the
templates and the JSON endpoints. Texts and numbers are shown as the records store them
(redacted and masked by the records builder).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from phoneagent.records.builder import CallRecord, Turn
from phoneagent.runtime.enums import enum_name
from phoneagent.runtime.turn_timing import HOPS, POINTS, STEPS, hops_ms, percentiles
from phoneagent.v1 import policy_pb2

# What each hop of the waterfall is called on the page, in order.
STEP_LABELS = {
    "caller_stop->speech_end": "end of speech",
    "speech_end->asr_final": "ASR",
    "asr_final->llm_first_token": "first token",
    "llm_first_token->first_sentence": "first sentence",
    "first_sentence->tts_first_audio": "TTS",
    "tts_first_audio->first_rtp": "playout",
}
HOP_LABELS = STEP_LABELS | {
    "mouth_to_ear": "mouth-to-ear",
    "end_of_speech_wait": "end-of-speech wait",
    "model_compute": "model compute",
    "overhead": "overhead",
}
AUDIT_CSV_COLUMNS = (
    "time_utc",
    "decision",
    "subject",
    "rule",
    "reason",
    "call_id",
    "number_hint",
    "campaign_id",
    "decision_id",
)


def when(unix_ns: int) -> str:
    """A time as the console shows it (UTC, to the second); empty when unknown."""
    if not unix_ns:
        return ""
    return datetime.fromtimestamp(unix_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def live(rec: CallRecord) -> bool:
    return bool(rec.started_unix_ns) and not rec.ended


def call_row(rec: CallRecord) -> dict[str, Any]:
    """One line of the calls list."""
    remote = rec.to_number if rec.direction == "outbound" else rec.from_number
    return {
        "call_id": rec.call_id,
        "started": when(rec.started_unix_ns),
        "started_unix_ns": rec.started_unix_ns,
        "direction": rec.direction,
        "transport": rec.transport,
        "agent": rec.agent,
        "remote": remote,
        "outcome": rec.outcome,
        "end_reason": rec.end_reason,
        "duration_s": round(rec.duration_ms / 1000) if rec.duration_ms else None,
        "live": live(rec),
        "turns": sum(1 for t in rec.turns if t.role == "caller"),
        "campaign_id": rec.campaign_id,
    }


def recording_start_ns(rec: CallRecord) -> int:
    """When the recording's first sample was taken: the edge starts it at policy's allowing
    recording decision; without one, the recording is taken to end with the call."""
    allowed = [
        int(d.get("ts_unix_ns", 0) or 0)
        for d in rec.decisions
        if d.get("subject") == "recording" and d.get("decision") == "allow"
    ]
    if allowed and min(allowed) > 0:
        return min(allowed)
    duration_ns = int(rec.recording.get("duration_ms", 0) or 0) * 1_000_000
    if rec.ended_unix_ns and duration_ns:
        return rec.ended_unix_ns - duration_ns
    return rec.answered_unix_ns or rec.started_unix_ns


def transcript(rec: CallRecord) -> list[dict[str, Any]]:
    """The turns as chat messages, with what a barge-in cut off and where each one is in the
    recording (seconds from its start; None before it)."""
    start = recording_start_ns(rec) if rec.recording.get("uri") else 0
    out = []
    for i, t in enumerate(rec.turns):
        heard, cut = t.text, ""
        if t.heard_chars is not None:
            heard, cut = t.text[: t.heard_chars], t.text[t.heard_chars :]
        at_ns = _heard_at(rec, t)
        at = (at_ns - start) / 1e9 if start and at_ns else None
        out.append(
            {
                "index": i,
                "role": t.role,
                "turn_id": t.turn_id,
                "text": t.text,
                "heard": heard,
                "cut": cut,
                "interrupted": t.heard_chars is not None,
                "played_ms": t.played_ms,
                "time": when(t.ts_unix_ns),
                "at_s": round(at, 3) if at is not None and at >= 0 else None,
                "latency_ms": t.latency_ms,
            }
        )
    return out


def _heard_at(rec: CallRecord, t: Turn) -> int:
    """When a turn is heard in the recording: a caller turn from its speech start, an agent turn
    from its first packet to the caller (when known; else when it was said)."""
    points = rec.timings.get(t.turn_id, {})
    if t.role == "caller":
        return points.get("speech_start") or t.ts_unix_ns
    if points.get("generation") == t.generation_id and points.get("first_rtp"):
        return points["first_rtp"]
    return t.ts_unix_ns


def _parsed(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def tools(rec: CallRecord) -> list[dict[str, Any]]:
    out = []
    for t in rec.tools:
        args, result = str(t.get("arguments", "")), str(t.get("result", ""))
        out.append(
            {
                "name": str(t.get("name", "")),
                "time": when(int(t.get("ts_unix_ns", 0) or 0)),
                "arguments": _pretty(args),
                "result": _pretty(result),
                "ok": t.get("ok"),
                "status": str(t.get("status", "")),
                "duration_ms": t.get("duration_ms"),
            }
        )
    return out


def _pretty(text: str) -> str:
    data = _parsed(text)
    return json.dumps(data, indent=1, ensure_ascii=False) if data is not None else text


def decisions(rec: CallRecord) -> list[dict[str, Any]]:
    return [
        {
            "time": when(int(d.get("ts_unix_ns", 0) or 0)),
            "decision": str(d.get("decision", "")),
            "subject": str(d.get("subject", "")),
            "rule": str(d.get("rule", "")),
            "reason": str(d.get("reason", "")),
        }
        for d in rec.decisions
    ]


def waterfall(rec: CallRecord) -> dict[str, Any]:
    """Per caller turn the hops (milliseconds from the turn's first known time point, for the
    chart) and their lengths, and each hop's p50/p95 over the call's turns."""
    turns: list[dict[str, Any]] = []
    for turn_id in sorted(rec.timings):
        points = rec.timings[turn_id]
        known = [points[p] for p in POINTS if points.get(p)]
        if not known:
            continue
        base = min(known)
        steps: list[dict[str, Any]] = []
        for step in STEPS:
            a, b = step.split("->")
            if points.get(a) and points.get(b):
                steps.append(
                    {
                        "hop": step,
                        "label": STEP_LABELS[step],
                        "start_ms": round((points[a] - base) / 1e6, 1),
                        "end_ms": round((points[b] - base) / 1e6, 1),
                    }
                )
        hops = {k: (round(v, 1) if v is not None else None) for k, v in hops_ms(points).items()}
        turns.append({"turn_id": turn_id, "steps": steps, "hops_ms": hops})
    stats = {
        hop: percentiles([t["hops_ms"][hop] for t in turns if t["hops_ms"].get(hop) is not None])
        for hop in HOPS
    }
    return {
        "turns": turns,
        "stats": stats,
        "labels": HOP_LABELS,
        "steps": [{"hop": s, "label": STEP_LABELS[s]} for s in STEPS],
    }


def call_view(rec: CallRecord) -> dict[str, Any]:
    """Everything the call page shows."""
    summary = rec.summary if isinstance(rec.summary, dict) else {}
    fields = summary.get("fields") if isinstance(summary.get("fields"), dict) else {}
    return {
        **call_row(rec),
        "answered": when(rec.answered_unix_ns),
        "ended": when(rec.ended_unix_ns),
        "end_detail": rec.end_detail,
        "from_number": rec.from_number,
        "to_number": rec.to_number,
        "transcript": transcript(rec),
        "tools": tools(rec),
        "transfers": [
            {"source": str(t.get("source", "")), "time": when(int(t.get("ts_unix_ns", 0) or 0))}
            for t in rec.transfers
        ],
        "decisions": decisions(rec),
        "summary": {
            "summary": str(summary.get("summary", "")),
            "intent": str(summary.get("intent", "")),
            "outcome": str(summary.get("outcome", "")),
            "fields": {str(k): str(v) for k, v in (fields or {}).items()},
        },
        "recording": {
            "present": bool(rec.recording.get("uri")),
            "format": str(rec.recording.get("format", "")),
            "duration_s": round(int(rec.recording.get("duration_ms", 0) or 0) / 1000, 2),
            "sha256": str(rec.recording.get("sha256", "")),
        },
        "waterfall": waterfall(rec),
    }


def audit_row(d: policy_pb2.PolicyDecision) -> dict[str, str]:
    return {
        "time_utc": when(d.decided_unix_ns or d.meta.ts_unix_ns),
        "decision": enum_name(policy_pb2.Decision, d.decision, prefix="DECISION_").lower(),
        "subject": d.subject,
        "rule": d.rule,
        "reason": d.reason,
        "call_id": d.meta.call_id if d.meta.call_id != "none" else "",
        "number_hint": d.number_hint,
        "campaign_id": d.campaign_id,
        "decision_id": d.decision_id,
    }


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def audit_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(AUDIT_CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in AUDIT_CSV_COLUMNS])
    return out.getvalue()
