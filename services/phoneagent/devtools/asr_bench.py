"""ASR latency benchmark: N concurrent calls through real :class:`AsrSession` objects.

    python -m phoneagent.devtools.asr_bench [--calls 1,2,4] [--utterances 5] [--model tiny.en]
        [--threads 1] [--window-s 15] [--json out.json]

Each call is a scripted caller: utterances synthesised with Piper, sent through the phone
path (8 kHz G.711 mu-law and back to 16 kHz), separated by silence, and fed in real time as
20 ms frames. All calls share one engine, as they do in one ASR replica. Call starts are
staggered evenly over one utterance cycle, so ends of speech do not all coincide.

End of speech is known exactly from the script (the last sample above -40 dBFS of each
utterance), so the latency reported is script end of speech to the moment ``feed`` hands
back the final: endpointing silence, queueing behind other calls' decodes, and the decode
itself. RTF is the engine's compute time divided by the utterance audio length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from phoneagent.asr.engines.base import AsrEngine, create_engine
from phoneagent.asr.engines.faster_whisper import DEFAULT_WINDOW_S
from phoneagent.asr.segmenter import SegmenterConfig
from phoneagent.asr.stream import AsrSession, Final
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz
VOICED = 0.01  # -40 dBFS: where the script says speech ends
SENTENCES = (
    "I would like to book an appointment for next Tuesday morning.",
    "What are your opening hours on Saturday?",
    "Can I speak to someone about my bill please?",
    "My name is Maria and my phone number changed last month.",
    "Yes, that works for me, thank you very much.",
    "Could you tell me where the clinic is located?",
    "I need to cancel my appointment on Friday afternoon.",
    "Is there parking near the main entrance?",
)
Span = tuple[float, float]  # (start, end of speech) in stream seconds


@dataclass(frozen=True)
class Utterance:
    text: str
    pcm: np.ndarray  # 16 kHz float32, as the edge would deliver it
    voiced_end_s: float  # end of speech within ``pcm``


@dataclass
class CallResult:
    latencies_s: list[float] = field(default_factory=list)
    rtfs: list[float] = field(default_factory=list)
    decodes_s: list[float] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (reference, hypothesis)
    missing: int = 0


@dataclass(frozen=True)
class Row:
    calls: int
    utterances: int
    finals: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_max_ms: float
    decode_p50_ms: float
    rtf_mean: float
    rtf_p95: float
    wer: float


def synthesize(texts: list[str], *, phone: bool = True) -> list[Utterance]:
    """Piper speech for ``texts`` at 16 kHz, through 8 kHz G.711 mu-law first when ``phone``."""
    from phoneagent.audio.g711 import ulaw_decode, ulaw_encode
    from phoneagent.audio.resample import resample
    from phoneagent.tts.engines.base import create_engine as create_tts

    tts = create_tts("piper")
    tts.load()
    out: list[Utterance] = []
    try:
        voice = tts.voices()[0]
        native = int(getattr(tts, "native_rate", 22050))
        for text in texts:
            audio = np.concatenate(list(tts.synthesize(text, voice, 1.0)))
            pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
            if phone:
                narrow = ulaw_decode(ulaw_encode(resample(pcm, native, 8000)))
                wide = resample(narrow, 8000, RATE)
            else:
                wide = resample(pcm, native, RATE)
            speech = wide.astype(np.float32) / 32768.0
            voiced = np.flatnonzero(np.abs(speech) > VOICED)
            if voiced.size == 0:
                raise InvalidArgument("synthesised utterance is silent")
            out.append(Utterance(text, speech, float(voiced[-1] + 1) / RATE))
    finally:
        tts.close()
    return out


def script(utterances: list[Utterance], gap_s: float, lead_s: float) -> tuple[np.ndarray, list[Span]]:
    """One caller's audio: ``lead_s`` of silence, then each utterance followed by ``gap_s``.
    Returns the audio and each utterance's (start, end of speech) in stream seconds."""
    parts = [np.zeros(int(lead_s * RATE), np.float32)]
    spans: list[Span] = []
    at = len(parts[0])
    for utt in utterances:
        spans.append((at / RATE, at / RATE + utt.voiced_end_s))
        parts += [utt.pcm, np.zeros(int(gap_s * RATE), np.float32)]
        at += len(utt.pcm) + int(gap_s * RATE)
    return np.concatenate(parts), spans


async def run_call(
    engine: AsrEngine,
    audio: np.ndarray,
    spans: list[Span],
    texts: list[str],
    t0: float,
    config: SegmenterConfig,
) -> CallResult:
    """Feed ``audio`` paced in real time from wall time ``t0``; collect finals."""
    session = AsrSession(engine, config=config)
    result = CallResult()
    finals: list[tuple[Final, float]] = []
    try:
        for k, i in enumerate(range(0, len(audio) - FRAME + 1, FRAME)):
            delay = t0 + k * FRAME / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            for ev in await session.feed(audio[i : i + FRAME], i / RATE):
                if isinstance(ev, Final):
                    finals.append((ev, time.perf_counter()))
        async with asyncio.timeout(60):
            finals += [(ev, time.perf_counter()) for ev in await session.drain() if isinstance(ev, Final)]
    finally:
        await session.close()
    for (start, end), text in zip(spans, texts, strict=True):
        match = [(ev, at) for ev, at in finals if ev.speech_start < end and ev.speech_end > start]
        if not match:
            result.missing += 1
            result.pairs.append((text, ""))
            continue
        ev, at = match[-1]  # the final that closes the utterance
        result.latencies_s.append(at - (t0 + end))
        result.rtfs.append(ev.result.real_time_factor if ev.result else 0.0)
        result.decodes_s.append(ev.result.compute_s if ev.result else 0.0)
        result.pairs.append((text, " ".join(e.text for e, _ in match)))
    return result


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def word_error_rate(pairs: list[tuple[str, str]]) -> float:
    errors = total = 0
    for ref_text, hyp_text in pairs:
        ref, hyp = _words(ref_text), _words(hyp_text)
        row = list(range(len(hyp) + 1))
        for i, r in enumerate(ref, 1):
            prev, row[0] = row[0], i
            for j, h in enumerate(hyp, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
        errors, total = errors + row[len(hyp)], total + len(ref)
    return errors / total if total else 0.0


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def bench(
    engine: AsrEngine, utterances: list[Utterance], calls: int, *, gap_s: float, config: SegmenterConfig
) -> Row:
    cycle = float(np.mean([len(u.pcm) / RATE for u in utterances])) + gap_s
    texts = [u.text for u in utterances]
    t0 = time.perf_counter() + 0.2
    jobs = []
    for c in range(calls):
        order = utterances[c % len(utterances) :] + utterances[: c % len(utterances)]
        audio, spans = script(order, gap_s, lead_s=0.5 + c * cycle / calls)
        jobs.append(run_call(engine, audio, spans, [u.text for u in order], t0, config))
    results = await asyncio.gather(*jobs)
    lat = [x for r in results for x in r.latencies_s]
    rtf = [x for r in results for x in r.rtfs]
    decode = [x for r in results for x in r.decodes_s]
    pairs = [p for r in results for p in r.pairs]
    return Row(
        calls=calls,
        utterances=len(texts) * calls,
        finals=len(lat),
        latency_p50_ms=round(_pct(lat, 50) * 1000),
        latency_p95_ms=round(_pct(lat, 95) * 1000),
        latency_max_ms=round(max(lat, default=float("nan")) * 1000),
        decode_p50_ms=round(_pct(decode, 50) * 1000),
        rtf_mean=round(float(np.mean(rtf)) if rtf else float("nan"), 3),
        rtf_p95=round(_pct(rtf, 95), 3),
        wer=round(word_error_rate(pairs), 3),
    )


def machine() -> dict[str, object]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "cpu": model,
        "cores": os.cpu_count() or 0,
        "load_1m": round(load, 2),
        "python": platform.python_version(),
    }


def table(rows: list[Row], info: dict[str, object], command: str) -> str:
    head = (
        f"{'calls':>5} {'finals':>9} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'decode p50':>10} "
        f"{'RTF mean':>9} {'RTF p95':>8} {'WER':>6}"
    )
    lines = [
        f"machine: {info['cpu']}, {info['cores']} cores, load {info['load_1m']} at start",
        f"command: {command}",
        "latency: scripted end of speech -> final transcript (includes the end-of-speech silence);",
        "decode: engine compute per utterance (the rest is endpointing and queueing)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        lines.append(
            f"{r.calls:>5} {f'{r.finals}/{r.utterances}':>9} {r.latency_p50_ms:>7.0f} "
            f"{r.latency_p95_ms:>7.0f} {r.latency_max_ms:>7.0f} "
            f"{r.decode_p50_ms:>10.0f} {r.rtf_mean:>9.3f} {r.rtf_p95:>8.3f} {r.wer:>6.3f}"
        )
    return "\n".join(lines)


def _calls(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("--calls takes numbers separated by commas, e.g. 1,2,4") from None
    if not counts or min(counts) < 1 or max(counts) > 64:
        raise argparse.ArgumentTypeError("--calls values must lie between 1 and 64")
    return counts


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m phoneagent.devtools.asr_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--calls", type=_calls, default=[1, 2, 4], help="concurrent calls per run (default 1,2,4)")
    p.add_argument("--utterances", type=int, default=5, help="utterances per call (default 5)")
    p.add_argument("--model", default="tiny.en", help="Whisper model (tiny.en or base)")
    p.add_argument("--engine", default="faster-whisper", help="ASR engine (default faster-whisper)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per decode (default 1)")
    p.add_argument(
        "--window-s",
        type=float,
        default=DEFAULT_WINDOW_S,
        help=f"faster-whisper: seconds the encoder reads per decode (default {DEFAULT_WINDOW_S}; "
        "30 = Whisper's own)",
    )
    p.add_argument("--gap", type=float, default=1.5, help="silence after each utterance, seconds")
    p.add_argument("--end-silence-ms", type=int, default=500, help="silence that ends an utterance")
    p.add_argument("--wideband", action="store_true", help="skip the 8 kHz G.711 round trip")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = p.parse_args(argv)
    if not 1 <= args.utterances <= 100 or args.threads < 1 or args.gap < args.end_silence_ms / 1000 + 0.2:
        p.error("--utterances must be 1..100, --threads >= 1, and --gap longer than the end silence")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "python -m phoneagent.devtools.asr_bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    info = machine()
    try:
        texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.utterances)]
        utterances = synthesize(texts, phone=not args.wideband)
        opts: dict[str, object] = {"model": args.model, "device": args.device}
        if args.engine == "faster-whisper":
            opts["cpu_threads"] = args.threads
            opts["window_s"] = args.window_s
        engine = create_engine(args.engine, **opts)
        engine.load()
        engine.transcribe(utterances[0].pcm)  # warm-up: the first decode pays one-off costs
    except PhoneAgentError as exc:
        print(f"asr bench: {exc}", file=sys.stderr)
        return 2
    config = SegmenterConfig(min_silence_ms=args.end_silence_ms, partial_interval_ms=0)
    rows: list[Row] = []
    try:
        for n in args.calls:
            rows.append(asyncio.run(bench(engine, utterances, n, gap_s=args.gap, config=config)))
            print(f"  {n} call(s) done", file=sys.stderr, flush=True)
    finally:
        engine.close()
    print(table(rows, info, command))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "command": command,
                    "engine": args.engine,
                    "model": args.model,
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
