"""Fold a call's stream events into one :class:`CallRecord`.

Pure functions over protobuf messages: the worker decodes, this module decides what the
record says. Numbers are masked and transcripts redacted before they are stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from phoneagent.runtime.enums import enum_name
from phoneagent.runtime.numbers import masked_party
from phoneagent.runtime.redact import redact_json, redact_transcript
from phoneagent.v1 import call_pb2, media_pb2, policy_pb2, speech_pb2, tools_pb2

API_AUDIT_SUBJECT = "api"  # the CallControl API's audit of its calls (not folded into records)
OUTCOMES = ("booked", "transferred", "message_taken", "opted_out", "voicemail", "no_answer", "completed")
_BOOKING_TOOLS = {"book_appointment", "move_appointment"}
# Bookkeeping of the worker, never shown to users (webhooks, the CLI, the control API).
INTERNAL_FIELDS = ("positions", "applied_seqs", "speech_end")


@dataclass
class Turn:
    role: str  # "caller" or "agent"
    turn_id: int
    text: str
    ts_unix_ns: int
    latency_ms: int | None = None  # agent turns: caller speech end -> first agent sentence
    generation_id: int = 0  # agent turns: the reply's generation
    # Agent turns: where each sentence ends in ``text`` (the sentences are joined by a space).
    sentence_ends: list[int] = field(default_factory=list)
    # Agent turns the caller spoke over: how many characters of ``text`` were heard (the rest
    # was cut off); None when the reply played to its end or nothing is known.
    heard_chars: int | None = None
    played_ms: int | None = None  # agent turns the caller spoke over: the audio played


@dataclass
class CallRecord:
    call_id: str
    direction: str = ""
    transport: str = ""
    agent: str = ""
    campaign_id: str = ""
    from_number: str = ""
    to_number: str = ""
    started_unix_ns: int = 0
    answered_unix_ns: int = 0
    ended_unix_ns: int = 0
    end_reason: str = ""
    end_detail: str = ""
    duration_ms: int = 0
    outcome: str = ""
    turns: list[Turn] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    recording: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)  # stream -> highest applied sequence
    applied_seqs: dict[str, list[int]] = field(default_factory=dict)  # stream -> sequences applied
    speech_end: dict[int, int] = field(default_factory=dict)  # caller turn -> speech end (ns)
    # Caller turn -> the time points of its answer (runtime.turn_timing's POINTS and EXTRAS, ns
    # and ms; also the caller's speech start and the answer's generation), folded from the
    # stored transcript, the reply's first sentence and the playout.
    timings: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.ended_unix_ns > 0

    def public_dict(self) -> dict[str, Any]:
        """The record as users see it: without the worker's bookkeeping."""
        return {k: v for k, v in asdict(self).items() if k not in INTERNAL_FIELDS}

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CallRecord:
        raw = json.loads(text)
        raw["turns"] = [Turn(**t) for t in raw.get("turns", [])]
        raw["speech_end"] = {int(k): int(v) for k, v in raw.get("speech_end", {}).items()}
        raw["timings"] = {int(k): dict(v) for k, v in raw.get("timings", {}).items()}
        return cls(**raw)


def already_applied(rec: CallRecord, stream: str, seq: int) -> bool:
    """Whether the stream message ``seq`` was folded in before (a redelivery after a restart).

    Sequences are kept one by one: a message that was refused and comes back later than newer
    ones of the same stream (a nak while the database was busy) is still applied.
    """
    seen = rec.applied_seqs.get(stream)
    if seen is None:  # written before sequences were kept: only the highest one is known
        return seq <= rec.positions.get(stream, 0)
    return seq in seen


def mark_applied(rec: CallRecord, stream: str, seq: int) -> None:
    rec.applied_seqs.setdefault(stream, []).append(seq)
    rec.positions[stream] = max(seq, rec.positions.get(stream, 0))


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    return enum_name(enum, value, prefix=prefix, unknown="UNSPECIFIED").lower()


def apply_lifecycle(rec: CallRecord, ev: call_pb2.CallEvent) -> None:
    kind = ev.WhichOneof("event")
    if kind == "started":
        s = ev.started
        rec.direction = _enum_name(call_pb2.Direction, s.direction, "DIRECTION_")
        rec.transport = _enum_name(call_pb2.Transport, s.transport, "TRANSPORT_")
        rec.agent, rec.campaign_id = s.agent, s.campaign_id
        rec.from_number = masked_party(s.from_uri)  # the edge stores them masked; an old stream may not
        rec.to_number = masked_party(s.to_uri)
        rec.started_unix_ns = s.meta.ts_unix_ns
    elif kind == "answered":
        rec.answered_unix_ns = ev.answered.meta.ts_unix_ns
    elif kind == "ended":
        e = ev.ended
        rec.ended_unix_ns = e.meta.ts_unix_ns or rec.ended_unix_ns or 1
        rec.end_reason = _enum_name(call_pb2.EndReason, e.reason, "END_REASON_")
        rec.end_detail = redact_transcript(e.detail)[:200]
        rec.duration_ms = e.duration_ms
        if e.reason == call_pb2.END_REASON_TRANSFERRED and not rec.transfers:
            rec.transfers.append({"source": "end_reason", "ts_unix_ns": rec.ended_unix_ns})
        rec.outcome = outcome_of(rec)


def apply_transcript(rec: CallRecord, tr: speech_pb2.Transcript, public: Sequence[str] = ()) -> None:
    if not tr.final or tr.backchannel or not tr.text.strip():
        return
    turn = tr.meta.turn_id
    if tr.speech_end_unix_ns:
        rec.speech_end[turn] = tr.speech_end_unix_ns
    ts = tr.emitted_unix_ns or tr.meta.ts_unix_ns
    # The agent's last sentence is the question this may answer ("your date of birth?").
    asked = next((t.text for t in reversed(rec.turns) if t.role == "agent"), "")
    rec.turns.append(Turn("caller", turn, redact_transcript(tr.text, context=asked, public=public), ts))
    _points(
        rec,
        turn,
        speech_start=tr.speech_start_unix_ns,
        speech_end=tr.speech_end_unix_ns,
        asr_final=tr.emitted_unix_ns,
        endpoint=tr.endpoint_unix_ns,
        asr_compute_ms=tr.compute_ms if tr.endpoint_unix_ns else 0,
    )


def _points(rec: CallRecord, turn: int, **points: int) -> None:
    """Note time points of caller turn ``turn`` (zero = unknown; a point is kept once set)."""
    if turn <= 0:
        return  # before the caller spoke (the greeting): no caller turn to time
    known = rec.timings.setdefault(turn, {})
    for name, value in points.items():
        if value and name not in known:
            known[name] = int(value)


def apply_say(rec: CallRecord, msg: speech_pb2.AgentText, public: Sequence[str] = ()) -> None:
    """Sentences of one generation are joined into one agent turn. ``public``: the business's own
    words, never masked."""
    text = redact_transcript(msg.text.strip(), public=public)
    if not text:
        return
    turn, ts, gen = msg.meta.turn_id, msg.meta.ts_unix_ns, msg.meta.generation_id
    last = rec.turns[-1] if rec.turns else None
    if last is not None and last.role == "agent" and last.turn_id == turn and msg.sentence_seq > 0:
        last.text = f"{last.text} {text}"
        last.sentence_ends.append(len(last.text))
        return
    latency = None
    end = rec.speech_end.get(turn)
    first_reply = not any(t.role == "agent" and t.turn_id == turn for t in rec.turns)
    if end and ts >= end and first_reply:
        latency = (ts - end) // 1_000_000
    if first_reply and msg.sentence_seq == 0:
        _points(
            rec,
            turn,
            first_sentence=ts,
            llm_first_token=msg.first_token_unix_ns,
            llm_request=msg.request_unix_ns,
            generation=gen,
        )
    rec.turns.append(Turn("agent", turn, text, ts, latency, generation_id=gen, sentence_ends=[len(text)]))


def apply_playout(rec: CallRecord, msg: media_pb2.Playout) -> None:
    """When a reply reached the caller (the turn's last time points), and on a barge-in how much
    of it was heard."""
    turn, gen = msg.meta.turn_id, msg.meta.generation_id
    if rec.timings.get(turn, {}).get("generation", gen) == gen:
        _points(
            rec,
            turn,
            caller_stop=msg.caller_stop_unix_ns,
            tts_first_audio=msg.tts_first_audio_unix_ns,
            tts_synth_ms=msg.tts_synth_ms,
            first_rtp=msg.first_packet_unix_ns,
            generation=gen,
        )
    if not msg.interrupted:
        return
    agent = next(
        (t for t in rec.turns if t.role == "agent" and t.generation_id == gen and t.turn_id == turn), None
    )
    if agent is None:
        return
    seq = msg.heard_sentence_seq
    ends = agent.sentence_ends or [len(agent.text)]
    before = ends[seq - 1] + 1 if 0 < seq <= len(ends) else 0  # sentences heard whole, and a space
    agent.heard_chars = min(len(agent.text), before + msg.heard_text_chars)
    agent.played_ms = msg.played_ms


def apply_tool_call(rec: CallRecord, call: tools_pb2.ToolCall) -> None:
    rec.tools.append(
        {
            "tool_call_id": call.tool_call_id,
            "name": call.name,
            "arguments": redact_json(call.arguments_json)[:2000],
            "ts_unix_ns": call.meta.ts_unix_ns,
        }
    )


def apply_tool_result(rec: CallRecord, res: tools_pb2.ToolResult) -> None:
    entry = next((t for t in rec.tools if t["tool_call_id"] == res.tool_call_id), None)
    if entry is None:
        entry = {"tool_call_id": res.tool_call_id, "name": res.name, "ts_unix_ns": res.meta.ts_unix_ns}
        rec.tools.append(entry)
    entry.update(
        ok=res.ok,
        result=redact_json(res.result_json)[:2000],
        duration_ms=res.duration_ms,
        status=_status_of(res.result_json),
    )
    if res.name == "transfer_to_human" and res.ok:
        rec.transfers.append({"source": "tool", "ts_unix_ns": res.meta.ts_unix_ns})


def _status_of(result_json: str) -> str:
    try:
        data = json.loads(result_json or "{}")
    except ValueError:
        return ""
    return str(data.get("status", "")) if isinstance(data, dict) else ""


def apply_recording(rec: CallRecord, msg: media_pb2.RecordingStored) -> None:
    rec.recording = {
        "uri": msg.uri,
        "format": msg.format,
        "duration_ms": msg.duration_ms,
        "size_bytes": msg.size_bytes,
        "sha256": msg.sha256,
    }
    if msg.incomplete_reason:  # allowed by policy, but not (or not all) recorded: the volume was full
        rec.recording["incomplete_reason"] = msg.incomplete_reason


def apply_decision(rec: CallRecord, d: policy_pb2.PolicyDecision) -> None:
    rec.decisions.append(
        {
            "decision_id": d.decision_id,
            "decision": _enum_name(policy_pb2.Decision, d.decision, "DECISION_"),
            "subject": d.subject,
            "rule": d.rule,
            "reason": d.reason[:200],
            "ts_unix_ns": d.decided_unix_ns or d.meta.ts_unix_ns,
        }
    )
    if d.subject == "escalation" and not rec.transfers:
        rec.transfers.append({"source": "policy", "ts_unix_ns": d.decided_unix_ns})
    if rec.ended:
        rec.outcome = outcome_of(rec)


def outcome_of(rec: CallRecord) -> str:
    """The one word a user filters calls by; the first matching rule wins."""
    if any(d["subject"] == "opt_out" for d in rec.decisions):
        return "opted_out"
    if rec.end_reason == "voicemail":
        return "voicemail"
    if rec.end_reason in ("no_answer", "busy") or (rec.ended and not rec.answered_unix_ns):
        return "no_answer"
    if rec.end_reason == "transferred" or rec.transfers:
        return "transferred"
    done = {t["name"] for t in rec.tools if t.get("ok")}
    if done & _BOOKING_TOOLS:
        return "booked"
    if "take_message" in done:
        return "message_taken"
    return "completed"
