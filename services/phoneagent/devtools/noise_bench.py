"""Noise benchmark: recognition and false barge-ins on noisy phone calls, with and without RNNoise.

    python -m phoneagent.devtools.noise_bench [--noise street,car,babble] [--snr 5,10,15]
        [--utterances 8] [--model tiny.en] [--json out.json]

Each condition is one scripted call: Piper speaks ``--utterances`` sentences with pauses between
them, mixed with generated noise at the given SNR (the speech's active level against the noise's
RMS) as the caller's microphone would pick them up, then sent down the phone line (8 kHz,
G.711 mu-law and back). From there it takes the edge's path frame by frame: the denoiser (or
not), the edge's barge-in VAD, the resampler to 16 kHz, and an :class:`AsrSession` (the ASR
service's segmenter and engine), fed as fast as it keeps up.

Noises (seeded, so every run hears the same): ``street`` (brown noise with passing-vehicle
swells and short horn and clatter bursts), ``car`` (low engine rumble with slowly varying
harmonics and road noise), ``babble`` (six espeak-ng talkers saying other sentences at once).

Reported per condition: WER over the sentences (every word the ASR adds from noise counts as an
insertion), false barge-ins (the VAD confirming speech where the script has none), spurious
finals (transcripts that overlap no sentence), and the denoiser's CPU as a share of one core
(CPU time over call time, at 8 kHz, resampling included). On a loaded machine the CPU share is
inflated; the load at start is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shlex
import shutil
import subprocess
import sys
import time
import wave
from dataclasses import asdict, dataclass

import numpy as np

from phoneagent.asr.engines.base import AsrEngine, create_engine
from phoneagent.asr.segmenter import SegmenterConfig
from phoneagent.asr.stream import AsrSession, Final
from phoneagent.audio.denoise import Denoiser
from phoneagent.audio.g711 import ulaw_decode, ulaw_encode
from phoneagent.audio.resample import StreamResampler, resample
from phoneagent.devtools.asr_bench import SENTENCES, machine, synthesize, word_error_rate
from phoneagent.edge.media.vad import BargeInVad, VadConfig, VadEventKind
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError

LINE = 8000  # the phone line's rate
ASR = 16000
FRAME = LINE // 50
NOISES = ("street", "car", "babble")
BABBLE = (
    "The weather has been lovely this week and we went to the park.",
    "Did you see the match last night, it went to extra time.",
    "I left my keys at the office again, can you believe it.",
    "We are thinking about painting the kitchen a lighter colour.",
    "The train was twenty minutes late and completely full.",
    "She said the new restaurant on the corner is very good.",
)
BABBLE_VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-us+m7", "en-us+f4")


@dataclass(frozen=True)
class Row:
    noise: str
    snr_db: float
    denoise: bool
    wer: float
    false_barge_ins: int
    spurious_finals: int
    missing: int
    denoise_cpu_pct: float  # of one core, per call


# --- noise ---------------------------------------------------------------------------------------
def _brown(n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.cumsum(rng.normal(0, 1, n))
    x -= np.convolve(x, np.ones(801) / 801, mode="same")  # remove the drift, keep the 1/f^2 slope
    return x


def _lowpass(x: np.ndarray, rate: int, cutoff: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / rate) > cutoff] = 0
    return np.fft.irfft(spec, len(x))


def _bandpass(x: np.ndarray, rate: int, low: float, high: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / rate)
    spec[(f < low) | (f > high)] = 0
    return np.fft.irfft(spec, len(x))


def street(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    base = _brown(n, rng)
    base /= base.std()
    swell = np.zeros(n)
    for _ in range(max(1, n // (rate * 4))):  # a vehicle passing every ~4 s
        centre, width = rng.uniform(0, t[-1]), rng.uniform(0.8, 2.0)
        swell += np.exp(-(((t - centre) / width) ** 2))
    hiss = _bandpass(rng.normal(0, 1, n), rate, 300, 3000)
    hiss /= hiss.std()
    out = base * (0.6 + swell) + 0.5 * hiss * swell
    for _ in range(max(1, n // (rate * 6))):  # a horn or a clatter now and then
        start, length = int(rng.uniform(0, n - rate // 2)), int(rng.uniform(0.1, 0.4) * rate)
        seg = slice(start, start + length)
        if rng.random() < 0.5:
            f0 = rng.uniform(350, 500)
            burst = np.sign(np.sin(2 * np.pi * f0 * t[seg])) * 0.8
        else:
            burst = rng.normal(0, 1.5, length) * np.exp(-np.arange(length) / (0.03 * rate))
        out[seg] += burst * 2.0
    return out


def car(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    rumble = _lowpass(rng.normal(0, 1, n), rate, 250)
    rumble /= rumble.std()
    rpm = 30 + 6 * np.sin(2 * np.pi * 0.07 * t + rng.uniform(0, 6))  # engine firing rate, Hz
    phase = 2 * np.pi * np.cumsum(rpm) / rate
    engine = sum(np.sin(k * phase) / k for k in range(1, 8))
    road = _bandpass(rng.normal(0, 1, n), rate, 100, 1200)
    road /= road.std()
    return 1.0 * rumble + 0.6 * engine + 0.4 * road


def _espeak(text: str, voice: str, rate: int) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise InvalidArgument("babble noise needs espeak-ng (apt-get install espeak-ng)")
    out = subprocess.run([exe, "-v", voice, "--stdout", text], capture_output=True, check=True, timeout=30)
    with wave.open(io.BytesIO(out.stdout)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return resample(pcm, w.getframerate(), rate).astype(np.float64)


def babble(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for text, voice in zip(BABBLE, BABBLE_VOICES, strict=True):
        talker = _espeak(text, voice, rate)
        talker /= talker.std() or 1.0
        loop = np.tile(
            np.concatenate([talker, np.zeros(int(rng.uniform(0.1, 0.5) * rate))]), n // len(talker) + 2
        )
        start = int(rng.uniform(0, len(talker)))
        out += loop[start : start + n]
    return out


GENERATORS = {"street": street, "car": car, "babble": babble}


# --- one call ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Script:
    speech: np.ndarray  # 8 kHz float, the caller's clean voice (int16 scale)
    spans: list[tuple[float, float]]  # each sentence's (start, end) in seconds
    texts: list[str]


def make_script(texts: list[str], gap_s: float) -> Script:
    utterances = synthesize(texts, phone=False)
    parts, spans, at = [np.zeros(LINE)], [], LINE
    for u in utterances:
        pcm = resample((u.pcm * 32767).astype(np.int16), ASR, LINE).astype(np.float64)
        voiced = np.flatnonzero(np.abs(pcm) > 0.01 * 32767)
        spans.append(((at + voiced[0]) / LINE, (at + voiced[-1] + 1) / LINE))
        parts += [pcm, np.zeros(int(gap_s * LINE))]
        at += len(pcm) + int(gap_s * LINE)
    return Script(np.concatenate(parts), spans, [u.text for u in utterances])


def mix(script: Script, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Caller's voice plus noise at ``snr_db`` (active speech level vs noise RMS), down the line."""
    voice = script.speech
    active = voice[np.abs(voice) > 0.01 * 32767]
    gain = np.sqrt(np.mean(active**2)) / (np.sqrt(np.mean(noise**2)) * 10 ** (snr_db / 20))
    line = voice + noise[: len(voice)] * gain
    peak = np.abs(line).max()
    if peak > 30000:
        line *= 30000 / peak
    return ulaw_decode(ulaw_encode(np.clip(line, -32768, 32767).astype(np.int16)))


async def run_call(engine: AsrEngine, line: np.ndarray, script: Script, denoise: bool) -> Row:
    denoiser = Denoiser(LINE) if denoise else None
    vad = BargeInVad(VadConfig(sample_rate=LINE))
    up = StreamResampler(LINE, ASR)
    session = AsrSession(engine, config=SegmenterConfig(partial_interval_ms=0))
    false_barge, cpu = 0, 0.0
    finals: list[Final] = []
    try:
        for i in range(0, len(line) - FRAME + 1, FRAME):
            frame = line[i : i + FRAME]
            if denoiser is not None:
                c0 = time.process_time()
                frame = denoiser.process(frame)
                cpu += time.process_time() - c0
            event = vad.process(frame)
            if event is not None and event.kind is VadEventKind.CONFIRMED:
                onset = event.onset_ms / 1000
                if not any(a - 0.3 <= onset <= b + 0.3 for a, b in script.spans):
                    false_barge += 1
            wide = up.process(frame).astype(np.float32) / 32768.0
            finals += [e for e in await session.feed(wide, i / LINE) if isinstance(e, Final)]
        finals += [e for e in await session.drain() if isinstance(e, Final)]
    finally:
        await session.close()
        if denoiser is not None:
            denoiser.close()
    pairs, missing = [], 0
    used: set[int] = set()
    for (start, end), text in zip(script.spans, script.texts, strict=True):
        match = [k for k, f in enumerate(finals) if f.speech_start < end + 0.3 and f.speech_end > start - 0.3]
        used.update(match)
        missing += not match
        pairs.append((text, " ".join(finals[k].text for k in match)))
    spurious = [f for k, f in enumerate(finals) if k not in used and f.text.strip()]
    pairs += [("", f.text) for f in spurious]  # words heard in noise alone: insertions
    return Row(
        noise="",
        snr_db=0.0,
        denoise=denoise,
        wer=round(word_error_rate(pairs), 3),
        false_barge_ins=false_barge,
        spurious_finals=len(spurious),
        missing=missing,
        denoise_cpu_pct=round(100 * cpu / (len(line) / LINE), 2),
    )


async def bench(
    engine: AsrEngine, script: Script, noises: list[str], snrs: list[float], seed: int
) -> list[Row]:
    rows: list[Row] = []
    n = len(script.speech)
    for k, name in enumerate(noises):
        noise = GENERATORS[name](n, LINE, np.random.default_rng(seed + k))
        for snr in snrs:
            line = mix(script, noise, snr)
            for denoise in (False, True):
                row = await run_call(engine, line, script, denoise)
                rows.append(Row(**{**asdict(row), "noise": name, "snr_db": snr}))
                print(
                    f"  {name} {snr:g} dB denoise={denoise}: WER {row.wer:.3f}", file=sys.stderr, flush=True
                )
    clean = ulaw_decode(ulaw_encode(np.clip(script.speech, -32768, 32767).astype(np.int16)))
    for denoise in (False, True):
        row = await run_call(engine, clean, script, denoise)
        rows.append(Row(**{**asdict(row), "noise": "none", "snr_db": float("inf")}))
    return rows


def table(rows: list[Row], info: dict[str, object], command: str) -> str:
    lines = [
        f"machine: {info['cpu']}, {info['cores']} cores, load {info['load_1m']} at start",
        f"command: {command}",
        "| noise | SNR dB | WER off | WER on | false barge-ins off | on | spurious finals off | on "
        "| RNNoise CPU % of a core |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r.noise, r.snr_db, r.denoise): r for r in rows}
    for noise, snr in dict.fromkeys((r.noise, r.snr_db) for r in rows):
        off, on = by[(noise, snr, False)], by[(noise, snr, True)]
        lines.append(
            f"| {noise} | {snr:g} | {off.wer:.3f} | {on.wer:.3f} | {off.false_barge_ins} "
            f"| {on.false_barge_ins} | {off.spurious_finals} | {on.spurious_finals} "
            f"| {on.denoise_cpu_pct:.1f} |"
        )
    noisy = [r for r in rows if r.noise != "none"]
    for denoise in (False, True):
        sel = [r for r in noisy if r.denoise is denoise]
        lines.append(
            f"mean over noisy calls, denoise {'on' if denoise else 'off'}: WER "
            f"{np.mean([r.wer for r in sel]):.3f}, false barge-ins {sum(r.false_barge_ins for r in sel)}, "
            f"spurious finals {sum(r.spurious_finals for r in sel)}"
        )
    return "\n".join(lines)


def _floats(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers separated by commas") from None


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m phoneagent.devtools.noise_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--noise", default=",".join(NOISES), help="noises, comma-separated (street,car,babble)")
    p.add_argument("--snr", type=_floats, default=[5.0, 10.0, 15.0], help="SNRs in dB (default 5,10,15)")
    p.add_argument("--utterances", type=int, default=8, help="sentences per call (default 8)")
    p.add_argument("--model", default="tiny.en", help="Whisper model (tiny.en or base)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per decode (default 1)")
    p.add_argument(
        "--gap", type=float, default=2.0, help="pause after each sentence, seconds (noise goes on)"
    )
    p.add_argument("--seed", type=int, default=1, help="noise generator seed")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    args = p.parse_args(argv)
    args.noise = [n.strip() for n in args.noise.split(",") if n.strip()]
    if not args.noise or any(n not in GENERATORS for n in args.noise):
        p.error(f"--noise must list some of {', '.join(NOISES)}")
    if not 1 <= args.utterances <= 50 or args.gap < 1.0:
        p.error("--utterances must be 1..50 and --gap at least 1 s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "python -m phoneagent.devtools.noise_bench " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    info = machine()
    try:
        script = make_script([SENTENCES[i % len(SENTENCES)] for i in range(args.utterances)], args.gap)
        engine = create_engine("faster-whisper", model=args.model, cpu_threads=args.threads)
        engine.load()
    except PhoneAgentError as exc:
        print(f"noise bench: {exc}", file=sys.stderr)
        return 2
    try:
        rows = asyncio.run(bench(engine, script, args.noise, args.snr, args.seed))
    finally:
        engine.close()
    print(table(rows, info, command))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "command": command, "rows": [asdict(r) for r in rows]}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
