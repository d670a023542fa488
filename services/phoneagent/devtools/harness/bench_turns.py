"""The bench's turns: the time points of each caller turn read from the bus, how the turn was
answered (``AgentText.answered_by``), and the statistics per kind of turn -- model turns and
code-answered turns are never summarised together.

Time points of a turn (unix ns, one machine): the caller stops speaking (the caller's clock) ->
end of speech as ASR saw it (Transcript.speech_end_unix_ns) -> ASR final emitted -> the LLM's
first token (AgentText.first_token_unix_ns on sentence 0) -> first reply sentence (AgentText
sentence 0) -> first TTS chunk (SpeechChunk sequence 0) -> first agent RTP packet with speech at
the caller. A point that is missing (a reply spoken without the model) leaves its two hops empty.
The points, hops and percentiles are :mod:`phoneagent.runtime.turn_timing`'s, which the
operator console computes from stored call records too.
"""

from __future__ import annotations

from typing import Any

from phoneagent.devtools.harness.buswatch import CallTrace
from phoneagent.devtools.harness.caller import CallResult, Utterance
from phoneagent.llm.preflight import same_words
from phoneagent.runtime.turn_timing import HOPS, POINTS, hops_ms, percentiles
from phoneagent.v1 import speech_pb2

# How a turn was answered (AgentText.answered_by), in the order the bench reports them, with
# what each group means.
KINDS = {
    "model": "model turns: the model wrote the reply",
    "model_tool": "model-tool turns: the model chose a tool, code spoke its result",
    "code": "code-answered turns: no model ran",
    "fallback": "fallback turns: the reply failed, an apology was spoken",
    "untagged": "untagged turns: no reply seen, or a stage that does not tag",
}
_KIND_OF = {
    speech_pb2.ANSWERED_MODEL: "model",
    speech_pb2.ANSWERED_MODEL_TOOL: "model_tool",
    speech_pb2.ANSWERED_CODE: "code",
    speech_pb2.ANSWERED_FALLBACK: "fallback",
}


def _reply_to(trace: CallTrace, final: speech_pb2.Transcript) -> speech_pb2.AgentText | None:
    """Sentence 0 of the reply to the caller turn of ``final``."""
    return next(
        (
            r
            for r in trace.replies
            if r.meta.turn_id == final.meta.turn_id
            and r.sentence_seq == 0
            and r.meta.ts_unix_ns >= final.emitted_unix_ns
        ),
        None,
    )


def _final_for(trace: CallTrace, utt: Utterance) -> speech_pb2.Transcript | None:
    return next((f for f in trace.finals if f.emitted_unix_ns >= utt.end_unix_ns), None)


def _caller_turns(result: CallResult) -> list[Utterance]:
    return [u for u in result.utterances if not u.barge_in]


def turn_points(result: CallResult, trace: CallTrace) -> list[dict[str, int | None]]:
    """The time points of each caller turn (barge-ins excluded), matched through the bus trace."""
    rows = []
    for utt in _caller_turns(result):
        e = utt.end_unix_ns
        final = _final_for(trace, utt)
        point: dict[str, int | None] = dict.fromkeys(POINTS)
        point |= dict.fromkeys(("endpoint", "asr_compute_ms", "llm_request", "tts_synth_ms"))
        point["caller_stop"] = e
        if utt.reply_latency_ms is not None:
            point["first_rtp"] = e + int(utt.reply_latency_ms * 1e6)
        if final is not None:
            point["speech_end"] = final.speech_end_unix_ns or None
            point["asr_final"] = final.emitted_unix_ns
            point["endpoint"] = final.endpoint_unix_ns or None
            point["asr_compute_ms"] = final.compute_ms if final.endpoint_unix_ns else None
            reply = _reply_to(trace, final)
            if reply is not None:
                point["llm_first_token"] = reply.first_token_unix_ns or None
                point["first_sentence"] = reply.meta.ts_unix_ns
                point["llm_request"] = reply.request_unix_ns or None
                chunk = next(
                    (
                        c
                        for c in trace.first_chunks
                        if c.meta.turn_id == final.meta.turn_id
                        and c.meta.generation_id == reply.meta.generation_id
                    ),
                    None,
                )
                point["tts_first_audio"] = chunk.meta.ts_unix_ns if chunk is not None else None
                point["tts_synth_ms"] = chunk.synth_ms if chunk is not None and chunk.synth_ms else None
        rows.append(point)
    return rows


def turn_answers(result: CallResult, trace: CallTrace) -> list[dict[str, Any]]:
    """How each caller turn (barge-ins excluded) was answered: the kind its reply's final sentence
    carries (the first sentence's when the reply never ended), the first sentence's own kind (a
    filler spoken while a tool runs is code), and the prompt tokens the model evaluated for it."""
    rows: list[dict[str, Any]] = []
    for utt in _caller_turns(result):
        final = _final_for(trace, utt)
        reply = _reply_to(trace, final) if final is not None else None
        row: dict[str, Any] = {
            "question": utt.text,
            "answered_by": "untagged",
            "first_sentence_answered_by": "untagged",
            "prompt_tokens_evaluated": None,
        }
        if reply is not None:
            end = next(
                (r for r in trace.replies if r.final and r.meta.generation_id == reply.meta.generation_id),
                None,
            )
            row["first_sentence_answered_by"] = _KIND_OF.get(reply.answered_by, "untagged")
            row["answered_by"] = _KIND_OF.get((end or reply).answered_by, "untagged")
            if end is not None and end.HasField("prompt_tokens_evaluated"):
                row["prompt_tokens_evaluated"] = end.prompt_tokens_evaluated
        rows.append(row)
    return rows


def call_turns(result: CallResult, trace: CallTrace) -> list[dict[str, Any]]:
    """Each caller turn of one call as the bench's JSON keeps it: the question, how it was
    answered, the prompt tokens evaluated, its hops in milliseconds and whether its final
    confirmed a preflight (the llm then started the reply before the final: the
    ``asr_final->llm_first_token`` hop shrinks, below zero when the first token came first)."""
    finals = [_final_for(trace, u) for u in _caller_turns(result)]
    return [
        {**answer, "hops_ms": hops_ms(point), "preflight_confirmed": _confirmed(trace, final)}
        for answer, point, final in zip(
            turn_answers(result, trace), turn_points(result, trace), finals, strict=True
        )
    ]


def _confirmed(trace: CallTrace, final: speech_pb2.Transcript | None) -> bool:
    return final is not None and any(
        p.meta.turn_id == final.meta.turn_id and same_words(p.text, final.text) for p in trace.preflights
    )


def preflight_outcomes(trace: CallTrace) -> tuple[int, int]:
    """(preflights the ASR published, those thrown away): a preflight is thrown away when the
    final of its turn carried other words (the caller went on), or no caller final followed (it
    was a backchannel, or the call ended); the llm then discarded the reply it had started."""
    thrown = 0
    for p in trace.preflights:
        final = next((f for f in trace.finals if f.meta.turn_id == p.meta.turn_id), None)
        thrown += final is None or not same_words(p.text, final.text)
    return len(trace.preflights), thrown


def preflight_summary(turns: list[dict[str, Any]], sent: int, thrown: int) -> dict[str, Any]:
    """How often a preemptive reply was thrown away, and the ASR final -> first token hop of
    model turns with a confirmed preflight and without one."""
    hop = "asr_final->llm_first_token"
    model = [
        t for t in turns if t["answered_by"] in ("model", "model_tool") and t["hops_ms"].get(hop) is not None
    ]
    return {
        "preflights": sent,
        "thrown_away": thrown,
        "thrown_away_rate": round(thrown / sent, 3) if sent else None,
        "final_to_first_token_ms": {
            "with_preflight": percentiles([t["hops_ms"][hop] for t in model if t.get("preflight_confirmed")]),
            "without": percentiles([t["hops_ms"][hop] for t in model if not t.get("preflight_confirmed")]),
        },
    }


def by_kind(turns: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind of turn that occurred (in :data:`KINDS` order): how many, each hop's p50/p95 and
    the prompt tokens evaluated (the median is the p50) -- one kind's turns never mix with another's."""
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = [t for t in turns if t["answered_by"] == kind]
        if not mine:
            continue
        hops = {
            h: percentiles([t["hops_ms"][h] for t in mine if t["hops_ms"].get(h) is not None]) for h in HOPS
        }
        tokens = [
            float(t["prompt_tokens_evaluated"]) for t in mine if t["prompt_tokens_evaluated"] is not None
        ]
        out[kind] = {"turns": len(mine), "hops_ms": hops, "prompt_tokens_evaluated": percentiles(tokens)}
    return out


def _cell(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def level_table(level: dict[str, Any]) -> list[str]:
    """The printed lines of one concurrency level: one table per kind of turn."""
    lines = [f"\n{level['concurrency']} concurrent call(s), {level['calls_failed']} failed"]
    if not level["by_kind"]:
        lines.append("  no caller turn was answered")
    for kind, group in level["by_kind"].items():
        tokens = group["prompt_tokens_evaluated"]
        lines.append(f"  {KINDS[kind]} ({group['turns']})")
        if kind != "code":
            lines.append(
                f"    new prompt tokens per turn: median {_cell(tokens['p50'])}, p95 {_cell(tokens['p95'])}"
                f" (reported on {tokens['n']} of {group['turns']} turns)"
            )
        lines.append(f"    {'hop':<34} {'n':>4} {'p50 ms':>9} {'p95 ms':>9}")
        for name, s in group["hops_ms"].items():
            lines.append(f"    {name:<34} {s['n']:>4} {_cell(s['p50']):>9} {_cell(s['p95']):>9}")
    barge = level["barge_in_stop_ms"]
    lines.append(f"  {'barge-in stop':<36} {barge['n']:>4} {_cell(barge['p50']):>9} {_cell(barge['p95']):>9}")
    pre = level.get("preflight")
    if pre is not None:
        rate = "-" if pre["thrown_away_rate"] is None else f"{100 * pre['thrown_away_rate']:.0f} %"
        lines.append(
            f"  preflights: {pre['preflights']}, preemptive replies thrown away: "
            f"{pre['thrown_away']} ({rate})"
        )
        for name, s in pre["final_to_first_token_ms"].items():
            label = f"asr_final->llm_first_token, {name.replace('_', ' ')}"
            lines.append(f"    {label:<34} {s['n']:>4} {_cell(s['p50']):>9} {_cell(s['p95']):>9}")
    return lines
