"""End-of-turn benchmark: ``python -m phoneagent.devtools.eot_bench``.

A labelled set built here: complete turns (questions, statements, a phone number read out) and
turns with a pause in the middle (digits read in groups, lists, "um" pauses, a phrase broken
off after "for" or "if"), spoken by several voices - Piper's joe, Kokoro voices, espeak-ng and
the recorded human voice of Debian's alsa-utils (its two-word samples, split at the gap between
the words for the mid-turn case) - at 16 kHz, through G.711 mu-law at 8 kHz, and through G.711
with noise (20 dB SNR). Every item runs through Silero VAD as the ASR service runs it; at each
pause (96 ms of silence) the decision of :mod:`phoneagent.asr.turn` is taken with Smart Turn
v3.2 and the Whisper tiny.en transcript of the turn so far.

Printed, for silence only and for the decision (and for its audio and words parts alone):

* the wait needed for at most 5 % false cut-offs - a mid-turn item is cut off when a pause
  before its true end lasts as long as the wait (for the decision, the short wait, used when
  the turn sounds finished, is swept; the long wait stays at 1.2 s);
* the false cut-off rate at a 300 ms wait;
* end of speech -> turn decided on complete turns: the wait, or the time the decision took
  (audio model and decode run side by side, so the longer of the two, after the 96 ms probe)
  when that is longer - once with their CPU time (what an idle core takes) and once with
  their wall-clock time on this machine under its load, which is printed.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phoneagent.asr.turn import Decision, TextState, TurnConfig, decide, text_state
from phoneagent.audio.g711 import ulaw_decode, ulaw_encode
from phoneagent.audio.resample import resample

RATE = 16000
CONDITIONS = ("16k", "g711", "g711+noise")
COMPLETE = (
    "What time do you close today?",
    "Can I book a checkup for next week?",
    "My phone number is 555 123 4567.",
    "I'd like a cleaning and a checkup.",
    "Do you take Delta Dental?",
    "Thanks, that's all.",
    "Is parking free?",
    "Can you move my appointment to Friday?",
)
MIDTURN = (
    ("My phone number is", "555 123 4567."),
    ("My number is 555", "123 4567."),
    ("I need a cleaning, a checkup,", "and a filling."),
    ("So, um,", "can I come in on Friday?"),
    ("I was wondering if", "you have anything on Monday."),
    ("Can I book an appointment for", "next Tuesday?"),
    ("My date of birth is", "March third, 1980."),
    ("I'd like to, uh,", "cancel my appointment."),
)
PAUSES_S = (0.4, 0.6, 0.8, 1.0)  # mid-turn pauses, taken in turn
VOICES = (
    "piper:joe",
    "kokoro:af_heart",
    "kokoro:am_adam",
    "kokoro:bf_emma",
    "espeak:en-us",
    "espeak:en-gb+m3",
    "human:alsa",
)
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
ALSA_SAMPLES = ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right")
SPEECH_RMS = 0.05  # about -26 dBFS
LEAD_S, TRAIL_S = 0.3, 1.5
PROBE_S = TurnConfig().probe_ms / 1000.0
GRID_MS = tuple(range(100, 2001, 50))


@dataclass(frozen=True)
class Item:
    voice: str
    condition: str
    complete: bool
    label: str
    pcm: np.ndarray


@dataclass
class Pause:
    last: bool  # the true end of the turn
    silence_s: float  # silence that followed the end of speech (VAD)
    score: float
    text: str
    compute_s: float  # audio model and decode side by side: the longer (wall clock)
    cpu_s: float  # the same in CPU time: what it takes on an idle core


@dataclass
class Judged:
    item: Item
    pauses: list[Pause]


# ---- speech ---------------------------------------------------------------------------------


def _wav(data: bytes | Path) -> np.ndarray:
    with wave.open(io.BytesIO(data) if isinstance(data, bytes) else str(data)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        pcm, rate = frames.reshape(-1, w.getnchannels())[:, 0].copy(), w.getframerate()
    return resample(pcm, rate, RATE).astype(np.float32) / 32768.0


def _trim(x: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > 0.2 * np.abs(x).max())
    if loud.size == 0:
        raise ValueError("silent utterance")
    return x[max(0, loud[0] - RATE // 50) : loud[-1] + RATE // 25]


def _level(x: np.ndarray) -> np.ndarray:
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    active = rms[rms > 0.1 * rms.max()]
    return (x * (SPEECH_RMS / float(np.sqrt((active**2).mean())))).astype(np.float32)


class Speaker:
    """16 kHz speech for a voice and a text; each TTS engine loaded once."""

    def __init__(self) -> None:
        self._engines: dict[str, object] = {}

    def say(self, voice: str, text: str) -> np.ndarray:
        kind, name = voice.split(":", 1)
        if kind == "espeak":
            exe = shutil.which("espeak-ng")
            if exe is None:
                raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
            out = subprocess.run(
                [exe, "-v", name, "-s", "160", "--stdout", text], capture_output=True, check=True, timeout=30
            ).stdout
            return _level(_trim(_wav(out)))
        engine = self._engine(kind)
        names = engine.voices()  # type: ignore[attr-defined]
        chunks = list(engine.synthesize(text, name if name in names else names[0], 1.0))  # type: ignore[attr-defined]
        audio = np.concatenate(chunks).astype(np.float32)
        pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
        native = int(engine.native_rate)  # type: ignore[attr-defined]
        return _level(_trim(resample(pcm, native, RATE).astype(np.float32) / 32768.0))

    def _engine(self, kind: str) -> object:
        if kind not in self._engines:
            from phoneagent.tts.engines.base import create_engine

            engine = create_engine(kind)
            engine.load()
            self._engines[kind] = engine
        return self._engines[kind]

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()  # type: ignore[attr-defined]


def _split_at_gap(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A two-word recording split at the quietest 30 ms between 25 % and 75 % of it."""
    hop = 160
    env = np.convolve(np.abs(x), np.ones(480) / 480, mode="same")[::hop]
    lo, hi = len(env) // 4, 3 * len(env) // 4
    cut = (lo + int(np.argmin(env[lo:hi]))) * hop
    return x[:cut], x[cut:]


def _split_sentence(speaker: Speaker, voice: str, first: str, second: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole sentence spoken at once (so the first part keeps the tune of a sentence that
    goes on), split at the quietest point near where the first part, spoken alone, ends."""
    whole = speaker.say(voice, f"{first} {second}")
    alone = len(speaker.say(voice, first))
    hop = 160
    env = np.convolve(np.abs(whole), np.ones(480) / 480, mode="same")[::hop]
    lo, hi = int(0.8 * alone) // hop, min(len(env) - 1, int(1.15 * alone) // hop)
    cut = (lo + int(np.argmin(env[lo:hi]))) * hop if hi > lo else alone
    return whole[:cut], whole[cut:]


def _line(x: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    if condition == "16k":
        return x
    narrow = resample(np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16), RATE, 8000)
    if condition == "g711+noise":
        noise = rng.standard_normal(len(narrow)) * SPEECH_RMS * 32767 / 10  # 20 dB below speech
        narrow = np.clip(np.round(narrow + noise), -32768, 32767).astype(np.int16)
    return resample(ulaw_decode(ulaw_encode(narrow)), 8000, RATE).astype(np.float32) / 32768.0


def build(voices: Iterable[str], conditions: Iterable[str], seed: int = 18) -> list[Item]:
    rng = np.random.default_rng(seed)
    speaker = Speaker()
    silence = lambda s: np.zeros(int(s * RATE), np.float32)  # noqa: E731
    raw: list[tuple[str, bool, str, np.ndarray]] = []
    k = 0
    try:
        for voice in voices:
            if voice == "human:alsa":
                for name in ALSA_SAMPLES:
                    whole = _level(_trim(_wav(ALSA_SOUNDS / f"{name}.wav")))
                    raw.append((voice, True, name, whole))
                    head, tail = _split_at_gap(whole)
                    pause = PAUSES_S[k % len(PAUSES_S)]
                    k += 1
                    raw.append((voice, False, f"{name} split", np.concatenate([head, silence(pause), tail])))
                continue
            for text in COMPLETE:
                raw.append((voice, True, text, speaker.say(voice, text)))
            for first, second in MIDTURN:
                pause = PAUSES_S[k % len(PAUSES_S)]
                k += 1
                head, tail = _split_sentence(speaker, voice, first, second)
                raw.append(
                    (voice, False, f"{first} / {second}", np.concatenate([head, silence(pause), tail]))
                )
    finally:
        speaker.close()
    items = []
    for condition in conditions:
        for voice, complete, label, speech in raw:
            audio = np.concatenate([silence(LEAD_S), speech, silence(TRAIL_S)])
            items.append(Item(voice, condition, complete, label, _line(audio, condition, rng)))
    return items


# ---- judging --------------------------------------------------------------------------------


def judge(
    item: Item, score: Callable[[np.ndarray], float], transcribe: Callable[[np.ndarray], str]
) -> Judged:
    """Run the item through Silero VAD; at every pause, the model score and the transcript so far."""
    from phoneagent.asr.segmenter import PauseDue, Segmenter, SegmenterConfig
    from phoneagent.asr.vad import SileroVad

    cfg = SegmenterConfig(min_silence_ms=10_000, partial_interval_ms=0, turn_probe_ms=int(PROBE_S * 1000))
    segmenter = Segmenter(SileroVad(), cfg)
    open_pauses: list[tuple[float, float, str, float, float]] = []  # speech end, score, text, wall, cpu
    pauses: list[Pause] = []
    frame = 320
    for i in range(0, len(item.pcm) - frame + 1, frame):
        t = i / RATE
        for ev in segmenter.feed(item.pcm[i : i + frame], t):
            if isinstance(ev, PauseDue):
                t0, c0 = time.perf_counter(), time.process_time()
                s = score(ev.pcm)
                t1, c1 = time.perf_counter(), time.process_time()
                text = transcribe(ev.pcm)
                t2, c2 = time.perf_counter(), time.process_time()
                open_pauses.append((ev.speech_end, s, text, max(t1 - t0, t2 - t1), max(c1 - c0, c2 - c1)))
        if open_pauses and segmenter.in_speech and segmenter.speech_end != open_pauses[-1][0]:
            end, s, text, wall, cpu = open_pauses.pop()
            pauses.append(Pause(False, t - end, s, text, wall, cpu))
    end_t = len(item.pcm) / RATE
    for end, s, text, wall, cpu in open_pauses:
        pauses.append(Pause(True, end_t - end, s, text, wall, cpu))
    if pauses and not any(p.last for p in pauses):
        pauses[-1].last = True  # the VAD heard no pause at the end (cannot happen with 1.5 s of silence)
    return Judged(item, pauses)


Method = Callable[[Pause, int], float]  # pause, short wait (ms) -> wait (s)


def _decision(kind: str) -> Method:
    def wait(p: Pause, short_ms: int) -> float:
        cfg = TurnConfig(min_wait_ms=short_ms, max_wait_ms=max(short_ms, 1200), probe_ms=min(96, short_ms))
        state = text_state(p.text)
        d: Decision
        if kind == "audio":
            d = decide(p.score, TextState.UNKNOWN, cfg)
        elif kind == "words":
            d = decide(None, state, cfg)
        else:
            d = decide(p.score, state, cfg)
        return d.wait_s

    return wait


METHODS: dict[str, Method] = {
    "silence only": lambda p, ms: ms / 1000.0,
    "audio model only": _decision("audio"),
    "words only": _decision("words"),
    "decision (audio+words)": _decision("both"),
}


def false_cut_rate(judged: list[Judged], method: Method, short_ms: int) -> float:
    mid = [j for j in judged if not j.item.complete]
    cut = sum(any(not p.last and p.silence_s >= method(p, short_ms) for p in j.pauses) for j in mid)
    return cut / len(mid) if mid else 0.0


def decided_ms(
    judged: list[Judged], method: Method, short_ms: int, silence_only: bool, cpu: bool = False
) -> list[float]:
    out = []
    for j in judged:
        if not j.item.complete:
            continue
        last = next(p for p in j.pauses if p.last)
        wait = method(last, short_ms)
        compute = last.cpu_s if cpu else last.compute_s
        out.append(1000 * (wait if silence_only else max(wait, PROBE_S + compute)))
    return out


def report(judged: list[Judged], info: dict[str, object], command: str) -> str:
    lines = [f"# {command}", "# " + ", ".join(f"{k}={v}" for k, v in info.items())]
    mid = sum(not j.item.complete for j in judged)
    lines.append(f"# {len(judged) - mid} complete turns, {mid} mid-turn pauses; Silero VAD, probe 96 ms")
    lines.append(
        f"{'method':24} {'wait for <=5% cut':>18} {'cut @300ms':>11} {'cut @200ms':>11}"
        f" {'decided p50 @200ms (cpu / wall)':>32}"
    )
    for name, method in METHODS.items():
        only = name == "silence only"
        need = next((ms for ms in GRID_MS if false_cut_rate(judged, method, ms) <= 0.05), None)
        need_s = f"{need} ms" if need is not None else f"> {GRID_MS[-1]} ms"
        at300, at200 = false_cut_rate(judged, method, 300), false_cut_rate(judged, method, 200)
        cpu = np.median(decided_ms(judged, method, 200, only, cpu=True))
        wall = np.median(decided_ms(judged, method, 200, only))
        lines.append(
            f"{name:24} {need_s:>18} {at300:>11.1%} {at200:>11.1%} {f'{cpu:.0f} / {wall:.0f} ms':>32}"
        )
    cpu_ms = [1000 * p.cpu_s for j in judged for p in j.pauses]
    lines.append(f"# cpu per pause (longer of model and decode): p50 {np.median(cpu_ms):.0f} ms")
    compute = [1000 * p.compute_s for j in judged for p in j.pauses]
    lines.append(f"# wall per pause (longer of model and decode): p50 {np.median(compute):.0f} ms")
    by_cond = []
    both = METHODS["decision (audio+words)"]
    for cond in dict.fromkeys(j.item.condition for j in judged):
        sub = [j for j in judged if j.item.condition == cond]
        by_cond.append(f"{cond} {false_cut_rate(sub, both, 200):.0%}")
    lines.append("# decision false cut-offs at the 200 ms default, by line: " + ", ".join(by_cond))
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m phoneagent.devtools.eot_bench", description=__doc__)
    ap.add_argument("--voices", default=",".join(VOICES), help="comma-separated (default: all)")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="16k, g711, g711+noise")
    ap.add_argument("--asr-model", default="tiny.en")
    ap.add_argument("--verbose", action="store_true", help="print every item's pauses")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "python -m phoneagent.devtools.eot_bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    from phoneagent.asr.engines.base import create_engine
    from phoneagent.asr.turn_model import SmartTurn

    voices = [v for v in args.voices.split(",") if v]
    conditions = [c for c in args.conditions.split(",") if c]
    if unknown := [c for c in conditions if c not in CONDITIONS]:
        raise SystemExit(f"unknown condition(s): {', '.join(unknown)}")
    items = build(voices, conditions)
    model = SmartTurn()
    model.load()
    engine = create_engine("faster-whisper", model=args.asr_model, cpu_threads=1)
    engine.load()
    judged = []
    for item in items:
        j = judge(item, model.score, lambda pcm: engine.transcribe(pcm).text)
        judged.append(j)
        if args.verbose:
            pauses = "; ".join(
                f"{'end' if p.last else 'mid'} {p.silence_s * 1000:.0f}ms s={p.score:.2f} {p.text!r}"
                for p in j.pauses
            )
            print(f"{item.condition:10} {item.voice:16} {item.label[:40]:40} {pauses}", file=sys.stderr)
    engine.close()
    from phoneagent.devtools.asr_bench import machine

    info = machine() | {"asr": args.asr_model, "load_1m_after": round(os.getloadavg()[0], 2)}
    print(report(judged, info, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
