"""A caller turn's latency: its time points, the hops between them, and percentiles.

One definition for the bench (which reads the points off the bus during its own calls) and the
records service's operator console (which reads them from the stored call record). Time points
of a turn (Unix ns): the caller stops speaking -> end of speech as ASR saw it
(``Transcript.speech_end_unix_ns``) -> ASR final emitted -> the LLM's first token
(``AgentText.first_token_unix_ns`` on sentence 0) -> first reply sentence (``AgentText`` sentence 0)
-> first TTS chunk (``SpeechChunk`` sequence 0) -> first agent audio packet to the caller. A point
that is missing (a reply spoken without the model) leaves its two hops empty.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

POINTS = (
    "caller_stop",
    "speech_end",
    "asr_final",
    "llm_first_token",
    "first_sentence",
    "tts_first_audio",
    "first_rtp",
)
# The consecutive hops between the points, in order (a waterfall draws them end to end).
STEPS = tuple(f"{a}->{b}" for a, b in zip(POINTS, POINTS[1:], strict=False))
# After the hops: mouth-to-ear, the end-of-speech wait (caller stops -> ASR declares the end:
# VAD plus the configured silence), model compute (ASR decode + the dialog from the caller's
# final to its first sentence + TTS synthesis of the first audio) and the overhead: everything
# from the end-of-speech decision to the first RTP packet that is not model compute (bus hops,
# serialisation, queues, the edge's 20 ms playout clock).
HOPS = STEPS + ("mouth_to_ear", "end_of_speech_wait", "model_compute", "overhead")
# Besides the points: when ASR declared the end of speech, its decode time, when the LLM service
# started the reply, and TTS's synthesis time of the first chunk.
EXTRAS = ("endpoint", "asr_compute_ms", "llm_request", "tts_synth_ms")

Points = Mapping[str, int | None]


def hops_ms(point: Points) -> dict[str, float | None]:
    """Each of :data:`HOPS` in milliseconds (None where a point it needs is missing)."""
    out: dict[str, float | None] = {}
    for a, b in zip(POINTS, POINTS[1:], strict=False):
        va, vb = point.get(a), point.get(b)
        out[f"{a}->{b}"] = (vb - va) / 1e6 if va is not None and vb is not None else None
    stop, rtp = point.get("caller_stop"), point.get("first_rtp")
    out["mouth_to_ear"] = (rtp - stop) / 1e6 if stop is not None and rtp is not None else None
    endpoint = point.get("endpoint")
    out["end_of_speech_wait"] = (endpoint - stop) / 1e6 if endpoint is not None and stop is not None else None
    out["model_compute"] = out["overhead"] = None
    parts = (
        point.get("asr_compute_ms"),
        point.get("llm_request"),
        point.get("first_sentence"),
        point.get("tts_synth_ms"),
    )
    if endpoint is not None and rtp is not None and all(v is not None for v in parts):
        asr_ms, request, sentence, synth_ms = (int(v) for v in parts)  # type: ignore[arg-type]
        compute = asr_ms + (sentence - request) / 1e6 + synth_ms
        out["model_compute"] = compute
        out["overhead"] = (rtp - endpoint) / 1e6 - compute
    return out


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """How many values, and their p50 and p95 (None when there are none)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p95": round(float(np.percentile(arr, 95)), 1),
    }
