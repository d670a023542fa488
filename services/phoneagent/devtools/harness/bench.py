"""The end-to-end latency benchmark: per-turn hops on one time line, barge-in stop latency,
and a sweep of concurrent calls. Fixed scenario and seed, so runs compare across commits.

Time points of a turn (unix ns, one machine): the caller stops speaking (the caller's clock) ->
end of speech as ASR saw it (Transcript.speech_end_unix_ns) -> ASR final emitted -> the LLM's
first token (AgentText.first_token_unix_ns on sentence 0) -> first reply sentence (AgentText
sentence 0) -> first TTS chunk (SpeechChunk sequence 0) -> first agent RTP packet with speech at
the caller. A point that is missing (a reply spoken without the model) leaves its two hops empty.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from phoneagent.devtools.harness.buswatch import BusWatch, CallTrace
from phoneagent.devtools.harness.caller import DEFAULT_TARGET, CallResult, SimulatedCaller, unique_user
from phoneagent.devtools.harness.impair import Impairments
from phoneagent.devtools.harness.scenario import BargeIn, Hangup, Say, Scenario, Wait
from phoneagent.devtools.harness.voice import CallerVoice
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import InvalidArgument

QUESTIONS = (
    "What are your opening hours on Monday?",
    "Do you take new patients?",
    "How much does a cleaning cost?",
    "Where are you located?",
)
POINTS = (
    "caller_stop",
    "speech_end",
    "asr_final",
    "llm_first_token",
    "first_sentence",
    "tts_first_audio",
    "first_rtp",
)
# After the hops: mouth-to-ear, the end-of-speech wait (caller stops -> ASR declares the end:
# VAD plus the configured silence), model compute (ASR decode + the dialog from the caller's
# final to its first sentence + TTS synthesis of the first audio) and the overhead: everything
# from the end-of-speech decision to the first RTP packet that is not model compute (bus hops,
# serialisation, queues, the edge's 20 ms playout clock).
HOPS = tuple(f"{a}->{b}" for a, b in zip(POINTS, POINTS[1:], strict=False)) + (
    "mouth_to_ear",
    "end_of_speech_wait",
    "model_compute",
    "overhead",
)
SEED = 1234


def bench_scenario(turns: int) -> Scenario:
    if not 1 <= turns <= 20:
        raise InvalidArgument("turns must be between 1 and 20")
    steps: list[Any] = [
        BargeIn("Hi, sorry, quick question.", after_ms=1500, timeout_s=120),
        Wait(timeout_s=120, silence_ms=3000),  # the answer, then the recording notice
    ]
    for i in range(turns):
        steps += [Say(QUESTIONS[i % len(QUESTIONS)]), Wait(timeout_s=120)]
    steps.append(Hangup())
    # New York (one-party consent): a recording notice, no consent question to answer.
    return Scenario("bench", tuple(steps), caller="+12125550100")


def turn_points(result: CallResult, trace: CallTrace) -> list[dict[str, int | None]]:
    """The time points of each caller turn (barge-ins excluded), matched through the bus trace."""
    rows = []
    for utt in result.utterances:
        if utt.barge_in:
            continue
        e = utt.end_unix_ns
        final = next((f for f in trace.finals if f.emitted_unix_ns >= e), None)
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
            turn = final.meta.turn_id
            reply = next(
                (
                    r
                    for r in trace.replies
                    if r.meta.turn_id == turn
                    and r.sentence_seq == 0
                    and r.meta.ts_unix_ns >= final.emitted_unix_ns
                ),
                None,
            )
            if reply is not None:
                point["llm_first_token"] = reply.first_token_unix_ns or None
                point["first_sentence"] = reply.meta.ts_unix_ns
                point["llm_request"] = reply.request_unix_ns or None
                chunk = next(
                    (
                        c
                        for c in trace.first_chunks
                        if c.meta.turn_id == turn and c.meta.generation_id == reply.meta.generation_id
                    ),
                    None,
                )
                point["tts_first_audio"] = chunk.meta.ts_unix_ns if chunk is not None else None
                point["tts_synth_ms"] = chunk.synth_ms if chunk is not None and chunk.synth_ms else None
        rows.append(point)
    return rows


def hops_ms(point: dict[str, int | None]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for a, b in zip(POINTS, POINTS[1:], strict=False):
        va, vb = point[a], point[b]
        out[f"{a}->{b}"] = (vb - va) / 1e6 if va is not None and vb is not None else None
    stop, rtp = point["caller_stop"], point["first_rtp"]
    out["mouth_to_ear"] = (rtp - stop) / 1e6 if stop is not None and rtp is not None else None
    endpoint = point.get("endpoint")
    out["end_of_speech_wait"] = (endpoint - stop) / 1e6 if endpoint is not None and stop is not None else None
    out["model_compute"] = out["overhead"] = None
    parts = (
        point.get("asr_compute_ms"),
        point.get("llm_request"),
        point["first_sentence"],
        point.get("tts_synth_ms"),
    )
    if endpoint is not None and rtp is not None and all(v is not None for v in parts):
        asr_ms, request, sentence, synth_ms = (int(v) for v in parts)  # type: ignore[arg-type]
        compute = asr_ms + (sentence - request) / 1e6 + synth_ms
        out["model_compute"] = compute
        out["overhead"] = (rtp - endpoint) / 1e6 - compute
    return out


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p95": round(float(np.percentile(arr, 95)), 1),
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


async def run_level(
    concurrency: int, turns: int, target: str, watch: BusWatch, voice: CallerVoice
) -> dict[str, Any]:
    scenario = bench_scenario(turns)
    callers = []
    for i in range(concurrency):
        user = unique_user(scenario.caller)
        watch.watch(user)
        callers.append(
            SimulatedCaller(
                scenario, voice, target=target, caller_user=user, impairments=Impairments(seed=SEED + i)
            )
        )
    await asyncio.to_thread(callers[0].prepare)
    results = await asyncio.gather(*(c.run() for c in callers), return_exceptions=True)
    await asyncio.sleep(0.5)
    hops: dict[str, list[float]] = {h: [] for h in HOPS}
    barge: list[float] = []
    failed = 0
    for res in results:
        if not isinstance(res, CallResult):
            failed += 1
            continue
        trace = watch.traces[res.caller_user]
        for point in turn_points(res, trace):
            for name, value in hops_ms(point).items():
                if value is not None:
                    hops[name].append(value)
        barge += [u.barge_stop_ms for u in res.utterances if u.barge_stop_ms is not None]
    return {
        "concurrency": concurrency,
        "calls_failed": failed,
        "hops_ms": {h: percentiles(v) for h, v in hops.items()},
        "barge_in_stop_ms": percentiles(barge),
    }


async def run_bench(
    levels: list[int], turns: int, nats_url: str, target: str = DEFAULT_TARGET
) -> dict[str, Any]:
    if not levels or any(not 1 <= n <= 64 for n in levels):
        raise InvalidArgument("--calls takes concurrency levels between 1 and 64")
    bus = Bus("harness-bench")
    await bus.connect(nats_url)
    voice = CallerVoice()
    try:
        watch = BusWatch(bus)
        await watch.start()
        sweep = [await run_level(n, turns, target, watch, voice) for n in levels]
    finally:
        voice.close()
        await bus.close()
    return {
        "benchmark": "end-to-end",
        "when_unix": int(time.time()),
        "machine": machine(),
        "scenario": "bench",
        "turns": turns,
        "seed": SEED,
        "target": target,
        "sweep": sweep,
    }


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['cores']} cores), python {m['python']}",
        f"scenario bench, {report['turns']} turns per call, seed {report['seed']}",
    ]
    for level in report["sweep"]:
        lines.append(f"\n{level['concurrency']} concurrent call(s), {level['calls_failed']} failed")
        lines.append(f"  {'hop':<34} {'n':>4} {'p50 ms':>9} {'p95 ms':>9}")
        rows = list(level["hops_ms"].items()) + [("barge-in stop", level["barge_in_stop_ms"])]
        for name, s in rows:
            p50 = "-" if s["p50"] is None else f"{s['p50']:.0f}"
            p95 = "-" if s["p95"] is None else f"{s['p95']:.0f}"
            lines.append(f"  {name:<34} {s['n']:>4} {p50:>9} {p95:>9}")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
