"""Every Prometheus metric the services export, defined in one place.

Names say what an operator asks ("how long from end of speech to the final
transcript?"). Latency histograms are in seconds with buckets spanning tens to
thousands of milliseconds. Dashboards and alert rules under ``deploy/k8s`` may only
use names defined here (a test checks it).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# 10 ms … 10 s: fits per-hop latency on CPU and GPU alike.
LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
)
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)

# --- per-hop latency (one observation per turn) -------------------------------------------
ASR_FINAL_LATENCY = Histogram(
    "pa_asr_final_latency_seconds",
    "End of caller speech to final transcript (ASR).",
    ["engine"],
    buckets=LATENCY_BUCKETS,
)
LLM_FIRST_TOKEN_LATENCY = Histogram(
    "pa_llm_first_token_seconds",
    "Final transcript (or, for a preemptive reply, its preflight) received to first LLM token.",
    ["engine"],
    buckets=LATENCY_BUCKETS,
)
LLM_FIRST_SENTENCE_LATENCY = Histogram(
    "pa_llm_first_sentence_seconds",
    "Final transcript (or, for a preemptive reply, its preflight) received to first sentence "
    "ready for TTS (a preemptive reply's is held until the final confirms it).",
    ["engine"],
    buckets=LATENCY_BUCKETS,
)
TTS_FIRST_AUDIO_LATENCY = Histogram(
    "pa_tts_first_audio_seconds",
    "Agent text received to first audio chunk (TTS).",
    ["engine"],
    buckets=LATENCY_BUCKETS,
)
EDGE_FIRST_PACKET_LATENCY = Histogram(
    "pa_edge_first_packet_seconds",
    "First speech chunk received to first media packet sent to the caller.",
    ["transport"],
    buckets=LATENCY_BUCKETS,
)
MOUTH_TO_EAR = Histogram(
    "pa_mouth_to_ear_seconds",
    "Caller stops speaking to first agent audio packet sent (whole round trip).",
    ["transport"],
    buckets=LATENCY_BUCKETS,
)
BARGE_IN_STOP_LATENCY = Histogram(
    "pa_barge_in_stop_seconds",
    "Confirmed caller speech to agent playout stopped.",
    ["transport"],
    buckets=LATENCY_BUCKETS,
)

# --- engine throughput ---------------------------------------------------------------------
ASR_RTF = Histogram(
    "pa_asr_real_time_factor", "ASR compute time divided by audio duration.", ["engine"], buckets=RTF_BUCKETS
)
ASR_WINDOW_REDECODES = Counter(
    "pa_asr_window_redecodes_total",
    "Decodes in the short encoder window whose text repeated itself (gzip ratio above 2.4), "
    "decoded again in Whisper's own 30 s window.",
    ["engine"],
)
TTS_RTF = Histogram(
    "pa_tts_real_time_factor", "TTS compute time divided by audio duration.", ["engine"], buckets=RTF_BUCKETS
)
LLM_ANSWER_FALLBACKS = Counter(
    "pa_llm_answer_fallbacks_total",
    "Answers after a tool ran that the model did not give in words (a tool call or JSON instead): "
    "the tool's own words were said.",
    ["engine"],
)
LLM_PREFLIGHT_REPLIES = Counter(
    "pa_llm_preflight_replies_total",
    "Replies started on a preflight transcript, by outcome: used (the final confirmed the text "
    "and the reply was released) or discarded (the final differed, the caller went on, or the "
    "conversation changed first: nothing of it was spoken or kept).",
    ["outcome"],
)
LLM_TOKENS_PER_SECOND = Histogram(
    "pa_llm_tokens_per_second",
    "LLM decode rate per reply.",
    ["engine"],
    buckets=(1, 2, 5, 10, 20, 30, 50, 75, 100, 200, 500),
)
ENGINE_CALLS = Counter(
    "pa_engine_calls_total",
    "Engine calls (transcribe, synthesise, stream), by stage, engine and outcome (ok or an error kind).",
    ["stage", "engine", "outcome"],
)
ENGINE_RETRIES = Counter(
    "pa_engine_retries_total", "Engine calls tried again after a retryable error.", ["stage", "engine"]
)
ENGINE_FALLBACKS = Counter(
    "pa_engine_fallbacks_total",
    "Calls handed to the next engine after one failed (retryable or unavailable).",
    ["stage", "from_engine", "to_engine"],
)

# --- calls and sessions --------------------------------------------------------------------
ACTIVE_CALLS = Gauge("pa_active_calls", "Calls in progress at this edge replica.", ["transport"])
CALLS_TOTAL = Counter("pa_calls_total", "Calls ended, by direction and end reason.", ["direction", "reason"])
ACTIVE_SESSIONS = Gauge("pa_active_sessions", "Call sessions owned by this replica.", ["stage"])
SESSION_CLAIMS = Counter("pa_session_claims_total", "Session claims, by outcome.", ["stage", "outcome"])
SESSION_TAKEOVERS = Counter(
    "pa_session_takeovers_total", "Sessions taken over from a replica that stopped heartbeating.", ["stage"]
)
BARGE_INS = Counter("pa_barge_ins_total", "Barge-ins that stopped agent playout.", ["transport"])
TRANSFERS = Counter("pa_transfers_total", "Transfers to a human, by kind and outcome.", ["kind", "outcome"])
POLICY_DECISIONS = Counter(
    "pa_policy_decisions_total", "Policy decisions, by decision and rule.", ["decision", "rule"]
)
ASR_ERRORS = Counter(
    "pa_asr_errors_total",
    "ASR errors on calls, by kind and what the agent did (asked_again, agent_busy, repeated).",
    ["kind", "action"],
)
DIALS_REFUSED = Counter(
    "pa_edge_dials_refused_total",
    "Outbound dial requests the edge refused for want of a matching policy approval, by reason.",
    ["reason"],
)
APPROVALS_REFUSED = Counter(
    "pa_edge_approvals_refused_total",
    "Transfers and recording decisions the edge refused for want of policy's signed approval "
    "for the call (and target), by action and reason.",
    ["action", "reason"],
)

SIP_REFUSED = Counter(
    "pa_edge_sip_refused_total",
    "SIP requests and connections the edge refused before any call existed, by reason: unknown_source, "
    "rate_limited, auth_failed, wrong_trunk, transactions_full, tcp_connections, tcp_per_source.",
    ["reason"],
)
SIP_REGISTERED = Gauge(
    "pa_edge_sip_registered", "1 while a trunk's outbound registration holds, else 0.", ["trunk"]
)
SIP_REGISTRATION_FAILURES = Counter(
    "pa_edge_sip_registration_failures_total",
    "Outbound registrations that failed or were lost, by trunk and reason: rejected, auth_failed, "
    "timeout, transport, error, flow_lost, keepalive, nat_rebinding.",
    ["trunk", "reason"],
)

# --- bus and queues ------------------------------------------------------------------------
BUS_MESSAGES = Counter("pa_bus_messages_total", "Messages handled on the bus.", ["kind", "direction"])
BUS_REJECTED = Counter(
    "pa_bus_rejected_total",
    "Messages dropped because they were malformed, oversized or of the wrong type.",
    ["kind", "reason"],
)
QUEUE_DEPTH = Gauge("pa_queue_depth", "Items waiting in a bounded work queue.", ["queue"])
QUEUE_DROPPED = Counter(
    "pa_queue_dropped_total", "Items dropped by a bounded queue's drop policy.", ["queue"]
)
CALLER_AUDIO_LOST = Counter(
    "pa_caller_audio_lost_frames_total",
    "20 ms frames of caller audio lost on the way to speech recognition, by where: edge_jitter "
    "(received, never played), asr_input (missing in the sequence the ASR session saw).",
    ["stage"],
)
ERRORS = Counter("pa_errors_total", "Errors by kind.", ["kind"])
RECORDING_VOLUME_FREE = Gauge(
    "pa_recording_volume_free_bytes", "Free space on the edge's recording volume (last check)."
)
RECORDING_VOLUME_MIN_FREE = Gauge(
    "pa_recording_volume_min_free_bytes",
    "Free space below which the edge starts no recording and stops those running (the setting).",
)
RECORDINGS_INCOMPLETE = Counter(
    "pa_recordings_incomplete_total",
    "Recordings allowed by policy that did not start or stopped before the call ended, by reason.",
    ["reason"],
)
RECORDINGS_PURGED = Counter(
    "pa_recordings_purged_total", "Recordings deleted after their retention, by store.", ["store"]
)
RECORDING_PURGE_FAILURES = Counter(
    "pa_recording_purge_failures_total",
    "Recording retention rounds that failed or timed out, by store.",
    ["store"],
)
SERVICE_READY = Gauge("pa_service_ready", "1 when this service reports ready.", ["service"])

ALL_METRIC_NAMES = (
    "pa_asr_final_latency_seconds",
    "pa_llm_first_token_seconds",
    "pa_llm_first_sentence_seconds",
    "pa_tts_first_audio_seconds",
    "pa_edge_first_packet_seconds",
    "pa_mouth_to_ear_seconds",
    "pa_barge_in_stop_seconds",
    "pa_asr_real_time_factor",
    "pa_tts_real_time_factor",
    "pa_llm_tokens_per_second",
    "pa_engine_calls_total",
    "pa_engine_retries_total",
    "pa_engine_fallbacks_total",
    "pa_active_calls",
    "pa_calls_total",
    "pa_active_sessions",
    "pa_session_claims_total",
    "pa_session_takeovers_total",
    "pa_barge_ins_total",
    "pa_transfers_total",
    "pa_policy_decisions_total",
    "pa_asr_errors_total",
    "pa_edge_dials_refused_total",
    "pa_edge_sip_refused_total",
    "pa_edge_approvals_refused_total",
    "pa_bus_messages_total",
    "pa_bus_rejected_total",
    "pa_queue_depth",
    "pa_queue_dropped_total",
    "pa_caller_audio_lost_frames_total",
    "pa_errors_total",
    "pa_service_ready",
)
