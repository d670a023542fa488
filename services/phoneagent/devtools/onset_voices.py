"""The onset benchmark's callers: many voices, levels, onset shapes and start delays.

Voices: Kokoro's English voices and Piper's joe (the TTS engines the project ships), espeak-ng
variants, and the recorded human voice of Debian's alsa-utils samples (read at run time, not
redistributed). Questions start with weak consonants ("few", "how", "who", "what", "so"), since
those are the first sounds a clipped onset loses. Every choice is drawn from one seeded
generator, so a run with the same seed speaks the same utterances the same way.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phoneagent.audio.resample import resample
from phoneagent.runtime.errors import InvalidArgument

RATE = 8000
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
QUESTIONS = (
    "What should new patients bring?",
    "Who is the children's dentist?",
    "How much does a cleaning cost?",
    "Few people know this, are you open on Saturday?",
    "So, can I book a checkup for next week?",
    "What time do you close today?",
    "Who do I talk to about a bill?",
    "How long does a filling take?",
    "So what are your opening hours?",
    "Few dentists do this, do you whiten teeth?",
    "Have you got anything on Friday morning?",
    "Do you accept Delta Dental insurance?",
    "Where is your office?",
    "Hi, is parking free?",
)
ALSA_SAMPLES = {  # file -> what the recorded voice says
    "Front_Center": "front center",
    "Front_Left": "front left",
    "Front_Right": "front right",
    "Rear_Center": "rear center",
    "Rear_Left": "rear left",
    "Rear_Right": "rear right",
    "Side_Left": "side left",
    "Side_Right": "side right",
}
KOKORO_VOICES = (
    "af_heart",
    "af_bella",
    "af_nicole",
    "af_sarah",
    "am_adam",
    "am_michael",
    "bf_emma",
    "bm_george",
)
ESPEAK_VOICES = ("en-us", "en-us+f3", "en-gb+m3")
LEVELS_DBFS = (-32.0, -26.0, -20.0, -14.0)  # active speech level: soft to loud
SOFT_ONSET_MS = 150  # a soft onset: the first 150 ms fade in


@dataclass(frozen=True)
class Planned:
    voice: str  # "kokoro:af_heart", "piper:joe", "espeak:en-us+f3", "human:alsa"
    text: str
    level_dbfs: float
    soft_onset: bool
    delay_s: float  # after the agent stops speaking
    sample: str = ""  # alsa sample name, for the human voice


def all_voices() -> list[str]:
    voices = [f"kokoro:{v}" for v in KOKORO_VOICES] + ["piper:joe"]
    voices += [f"espeak:{v}" for v in ESPEAK_VOICES] + ["human:alsa"]
    return voices


def plan(count: int, seed: int, voices: list[str] | None = None) -> list[Planned]:
    """``count`` utterances, voices taken in turn (shuffled), everything else drawn per utterance."""
    if count < 1:
        raise InvalidArgument("count must be at least 1")
    rng = np.random.default_rng(seed)
    pool = list(voices or all_voices())
    order = [pool[i] for i in rng.permutation(len(pool))]
    out = []
    for i in range(count):
        voice = order[i % len(order)]
        sample = ""
        if voice == "human:alsa":
            sample = str(rng.choice(sorted(ALSA_SAMPLES)))
            text = ALSA_SAMPLES[sample]
        else:
            text = str(QUESTIONS[int(rng.integers(len(QUESTIONS)))])
        level = float(LEVELS_DBFS[int(rng.integers(len(LEVELS_DBFS)))])
        soft = bool(rng.random() < 0.5)
        delay = round(float(rng.uniform(0.3, 3.0)), 2)
        out.append(Planned(voice, text, level, soft, delay, sample))
    return out


def shape(pcm: np.ndarray, level_dbfs: float, soft_onset: bool) -> np.ndarray:
    """Trim leading and trailing silence, scale to ``level_dbfs`` active level, fade in if soft."""
    from phoneagent.devtools.harness.impair import normalise_speech

    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 100)
    if loud.size == 0:
        raise InvalidArgument("synthesised utterance is silent")
    pcm = pcm[max(0, loud[0] - RATE // 100) : loud[-1] + RATE // 50]
    out = normalise_speech(pcm, level_dbfs).astype(np.float64)
    if soft_onset:
        n = min(len(out), SOFT_ONSET_MS * RATE // 1000)
        out[:n] *= np.linspace(0.0, 1.0, n) ** 2
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


class Voices:
    """Synthesises planned utterances at 8 kHz (each engine loaded once, on first use)."""

    def __init__(self) -> None:
        self._engines: dict[str, object] = {}
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}

    def render(self, p: Planned) -> np.ndarray:
        key = (p.voice, p.text, p.sample)
        if key not in self._cache:
            self._cache[key] = self._synth(p)
        return shape(self._cache[key], p.level_dbfs, p.soft_onset)

    def _synth(self, p: Planned) -> np.ndarray:
        kind, name = p.voice.split(":", 1)
        if kind == "human":
            return _read_wav(ALSA_SOUNDS / f"{p.sample}.wav")
        if kind == "espeak":
            return _espeak(p.text, name)
        return self._tts(kind, name)(p.text)

    def _tts(self, engine_name: str, voice: str) -> Callable[[str], np.ndarray]:
        from phoneagent.tts.engines.base import create_engine

        engine = self._engines.get(engine_name)
        if engine is None:
            engine = create_engine(engine_name)
            engine.load()
            self._engines[engine_name] = engine

        def speak(text: str) -> np.ndarray:
            names = engine.voices()  # type: ignore[attr-defined]
            chosen = voice if voice in names else names[0]
            chunks = list(engine.synthesize(text, chosen, 1.0))  # type: ignore[attr-defined]
            audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
            pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
            return resample(pcm, int(engine.native_rate), RATE)  # type: ignore[attr-defined]

        return speak

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()  # type: ignore[attr-defined]
        self._engines.clear()


def _read_wav(path: Path | bytes) -> np.ndarray:
    if isinstance(path, Path) and not path.is_file():
        raise InvalidArgument(f"{path} not found: install Debian's alsa-utils for the human voice")
    with wave.open(io.BytesIO(path) if isinstance(path, bytes) else str(path)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        pcm, rate = frames.reshape(-1, w.getnchannels())[:, 0].copy(), w.getframerate()
    return resample(pcm, rate, RATE)


def _espeak(text: str, voice: str) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise InvalidArgument("espeak-ng is not installed (apt-get install espeak-ng)")
    out = subprocess.run(
        [exe, "-v", voice, "-s", "160", "--stdout", text], capture_output=True, check=True, timeout=30
    ).stdout
    return _read_wav(out)
