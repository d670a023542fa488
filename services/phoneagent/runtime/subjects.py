"""Every NATS subject, built in one place from ids.

Per-call data subjects live under ``pa.v1.call.<call_id>``; the control lane for a call
is ``pa.v1.ctl.<call_id>`` (its own prefix, so it can have its own connection,
permissions and stream rules). Nothing else in the code base formats a subject.
"""

from __future__ import annotations

import re
import secrets
import time

from phoneagent.runtime.errors import InvalidArgument

PREFIX = "pa.v1"
STAGES = ("asr", "llm", "tts", "policy")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# JetStream streams and key-value buckets.
CALLS_STREAM = "PA_CALLS"
AUDIT_STREAM = "PA_AUDIT"
SESSIONS_BUCKET = "pa_sessions"
DIALOG_BUCKET = "pa_dialog"

# Deferrable stage work: a JetStream work queue (each job is removed once acknowledged), so the
# backlog survives restarts and its consumer lag is what KEDA's nats-jetstream trigger scales on.
WORK_STREAM = "PA_WORK"
WORK_SUMMARIZE = f"{PREFIX}.work.llm.summarize"  # SummaryRequest jobs (records side -> llm workers)
WORK_SUMMARY_RESULTS = f"{PREFIX}.work.records.summary"  # CallSummary results (llm -> records side)
WORK_SUBJECTS = [WORK_SUMMARIZE, WORK_SUMMARY_RESULTS]
LLM_SUMMARIES_CONSUMER = "llm-summaries"  # durable pull consumer of WORK_SUMMARIZE (llm replicas)
RECORDS_SUMMARIES_CONSUMER = "records-summaries"  # durable pull consumer of WORK_SUMMARY_RESULTS


def check_id(value: str, what: str = "call id") -> str:
    if not _ID.match(value or ""):
        raise InvalidArgument(f"{what} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def new_call_id() -> str:
    """Time-ordered, unguessable call id (safe as a subject token and a file name)."""
    return f"c{int(time.time() * 1000):x}{secrets.token_hex(6)}"


def _call(call_id: str, leaf: str) -> str:
    return f"{PREFIX}.call.{check_id(call_id)}.{leaf}"


# --- per-call data lane ---------------------------------------------------------------------
def lifecycle(call_id: str) -> str:
    """CallEvent: started / answered / ended (edge -> everyone; kept in PA_CALLS)."""
    return _call(call_id, "lifecycle")


def audio_in(call_id: str) -> str:
    """AudioFrame: caller audio (edge -> asr)."""
    return _call(call_id, "audio")


def asr_events(call_id: str) -> str:
    """AsrEvent: speech started, partial transcripts, errors (asr -> the browser relay, which
    shows speech and partials; the llm, which answers errors)."""
    return _call(call_id, "asr")


def transcript(call_id: str) -> str:
    """Transcript: final caller transcripts, raw (asr -> llm, policy; a redacted copy is kept)."""
    return _call(call_id, "transcript")


def reply(call_id: str) -> str:
    """AgentText: the model's reply sentences (llm -> policy)."""
    return _call(call_id, "reply")


def say(call_id: str) -> str:
    """AgentText: sentences approved by policy for speech (policy -> tts; a redacted copy is kept)."""
    return _call(call_id, "say")


def speech(call_id: str) -> str:
    """SpeechChunk: agent audio for playout (tts -> edge)."""
    return _call(call_id, "speech")


def recording(call_id: str) -> str:
    """RecordingStored: a call recording was written (edge -> records; kept in PA_CALLS)."""
    return _call(call_id, "recording")


def playout(call_id: str) -> str:
    """Playout: when an agent reply's first audio reached the caller, and what a barge-in cut off
    (edge -> records; kept in PA_CALLS)."""
    return _call(call_id, "playout")


def tool(call_id: str) -> str:
    """ToolCall / ToolResult records, raw (llm -> policy; a redacted copy is kept). Both kinds
    travel there, so each message (and its record copy) names its type in :data:`TOOL_TYPE_HEADER`."""
    return _call(call_id, "tool")


TOOL_TYPE_HEADER = "Pa-Type"  # "ToolCall" or "ToolResult", on a call's tool subject and its record copy


RECORD_KINDS = ("transcript", "say", "tool")


def record(call_id: str, kind: str) -> str:
    """The stored copy of a call's ``transcript``, ``say`` or ``tool`` messages: the same message
    types (and the tool subject's type header), free text redacted by policy; kept in PA_CALLS.
    The live subjects above carry the raw text and are not stored."""
    if kind not in RECORD_KINDS:
        raise InvalidArgument(f"unknown record kind {kind!r}")
    return _call(call_id, f"record.{kind}")


# --- per-call control lane ------------------------------------------------------------------
# The kinds of ControlEvent (its ``kind`` oneof). Each travels on its own subject under the
# call's control subject, so bus permissions can say which service may send which kind (the
# TTS only its errors; only policy its directives). ``unset``: an event with no kind.
CONTROL_KINDS = (
    "barge_in",
    "cancel",
    "playback_done",
    "hangup",
    "transfer",
    "transfer_result",
    "dtmf",
    "error",
    "directive",
)
CONTROL_UNSET = "unset"


def control(call_id: str) -> str:
    """The call's control lane (ControlEvent: barge-in, cancel, playback done, hangup, transfer,
    DTMF). The bus sends an event published here on :func:`control_event` of its kind, and a
    subscription here receives every kind (:func:`control_all`)."""
    return f"{PREFIX}.ctl.{check_id(call_id)}"


def control_event(call_id: str, kind: str) -> str:
    """The subject a ControlEvent of ``kind`` (a :data:`CONTROL_KINDS` name) travels on."""
    if kind not in CONTROL_KINDS and kind != CONTROL_UNSET:
        raise InvalidArgument(f"unknown control kind {kind!r}")
    return f"{control(call_id)}.{kind}"


def control_all(call_id: str) -> str:
    """Every ControlEvent of a call, whatever its kind."""
    return f"{control(call_id)}.*"


def is_control(subject: str) -> bool:
    """True for a call's control subject as :func:`control` builds it (no kind token)."""
    parts = subject.split(".")
    return len(parts) == 4 and subject.startswith(f"{PREFIX}.ctl.")


# --- audit, sessions, edge commands ---------------------------------------------------------
AUDIT_PREFIX = f"{PREFIX}.audit."


def audit(call_id: str = "none") -> str:
    """PolicyDecision records (kept in PA_AUDIT); ``none`` for decisions before a call exists."""
    return f"{AUDIT_PREFIX}{check_id(call_id)}"


def session_claim(stage: str) -> str:
    return f"{PREFIX}.session.{_stage(stage)}.claim"


def session_heartbeat(stage: str) -> str:
    return f"{PREFIX}.session.{_stage(stage)}.heartbeat"


def sessions_bucket(stage: str) -> str:
    """Key-value bucket holding the ownership records of ``stage``'s sessions (key: call id)."""
    return f"{SESSIONS_BUCKET}_{_stage(stage)}"


def edge_dial() -> str:
    """Request to place an outbound call (policy -> edge, queue group)."""
    return f"{PREFIX}.edge.dial"


def tts_render() -> str:
    """RenderRequest -> RenderReply: a short text rendered whole (edge -> tts, queue group ``tts``);
    the warm-transfer summary the edge plays to the human before bridging the call."""
    return f"{PREFIX}.tts.render"


RENDER_MAX_TEXT = 600  # characters of a RenderRequest's text
RENDER_MAX_BYTES = 768 * 1024  # PCM in one RenderReply: below NATS's default 1 MiB payload


def dial_check() -> str:
    """Request for a policy decision on an outbound dial (queue group)."""
    return f"{PREFIX}.policy.dialcheck"


def transfer_check() -> str:
    """Request for a policy decision on transferring a call (TransferCheck -> PolicyDecision with
    the signed approval; queue group)."""
    return f"{PREFIX}.policy.transfercheck"


def summary_job_id(call_id: str) -> str:
    """Nats-Msg-Id of a call's summary job: a second publish (another replica, a restart) is
    dropped by the PA_WORK stream's duplicate window."""
    return f"summary-{check_id(call_id)}"


def summary_result_id(call_id: str) -> str:
    """Nats-Msg-Id of a call's summary result (a redelivered job publishes it once)."""
    return f"summary-result-{check_id(call_id)}"


def _stage(stage: str) -> str:
    if stage not in STAGES:
        raise InvalidArgument(f"unknown stage {stage!r}")
    return stage


# Wildcards used by stream definitions and fan-in subscriptions.
ALL_CALL_EVENTS = f"{PREFIX}.call.>"  # every per-call subject (the records consumer's filter)
ALL_LIFECYCLE = f"{PREFIX}.call.*.lifecycle"
ALL_TRANSCRIPTS = f"{PREFIX}.call.*.transcript"
ALL_SAY = f"{PREFIX}.call.*.say"
ALL_TOOLS = f"{PREFIX}.call.*.tool"
ALL_RECORDINGS = f"{PREFIX}.call.*.recording"
ALL_PLAYOUTS = f"{PREFIX}.call.*.playout"
ALL_RECORDS = f"{PREFIX}.call.*.record.*"  # redacted copies (see ``record``)
ALL_AUDIT = f"{PREFIX}.audit.*"
ALL_AUDIO = f"{PREFIX}.call.*.audio"
ALL_ASR = f"{PREFIX}.call.*.asr"
ALL_REPLY = f"{PREFIX}.call.*.reply"
ALL_SPEECH = f"{PREFIX}.call.*.speech"
ALL_CONTROL = f"{PREFIX}.ctl.*.*"  # every kind of every call's control events
ALL_SESSION_CLAIMS = f"{PREFIX}.session.*.claim"
ALL_SESSION_HEARTBEATS = f"{PREFIX}.session.*.heartbeat"


def any_call_control(kind: str) -> str:
    """ControlEvents of ``kind`` on any call (a permission pattern)."""
    if kind not in CONTROL_KINDS:
        raise InvalidArgument(f"unknown control kind {kind!r}")
    return f"{PREFIX}.ctl.*.{kind}"


# What PA_CALLS stores: never a live subject carrying caller or agent text, only its redacted copy.
CALLS_STREAM_SUBJECTS = [ALL_LIFECYCLE, ALL_RECORDINGS, ALL_PLAYOUTS, ALL_RECORDS]

# What a policy replica taking a call over replays (PA_REPLAY, in memory for minutes): the
# replies the dead owner had not passed on, the playback reports its disclosure waits for, and
# the caller's transcripts (an opt-out or a request for a person said during the takeover).
REPLAY_STREAM = "PA_REPLAY"
REPLAY_CONTROL_KINDS = ("playback_done", "barge_in", "cancel")
REPLAY_STREAM_SUBJECTS = [ALL_REPLY, ALL_TRANSCRIPTS, *(any_call_control(k) for k in REPLAY_CONTROL_KINDS)]
POLICY_CALLS_BUCKET = "pa_policy_calls"  # per call: the gate's state (disclosure, last reply)


def replay(call_id: str) -> list[str]:
    """One call's subjects in PA_REPLAY."""
    return [reply(call_id), transcript(call_id), *(control_event(call_id, k) for k in REPLAY_CONTROL_KINDS)]


def call_id_of(subject: str) -> str | None:
    """The call id token of a per-call subject, or None."""
    parts = subject.split(".")
    if len(parts) >= 4 and parts[0] == "pa" and parts[1] == "v1" and parts[2] in ("call", "ctl", "audit"):
        return parts[3]
    return None
