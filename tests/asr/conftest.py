"""Fixtures for the ASR tests: real speech (espeak-ng and a recorded human voice), the
telephone path (8 kHz G.711 mu-law and back), word error rate, and a loaded tiny.en engine."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from phoneagent.audio.g711 import ulaw_decode, ulaw_encode
from phoneagent.audio.resample import resample
from support.common import word_errors
from support.whisperx_standin import Calls, install, uninstall

RATE = 16000
# Recorded human voice shipped by Debian's alsa-utils (read at test time, not redistributed).
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")


def _to_float(pcm: np.ndarray) -> np.ndarray:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def _read_wav(data: bytes | Path) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data) if isinstance(data, bytes) else str(data)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return frames.reshape(-1, w.getnchannels())[:, 0].copy(), w.getframerate()


@pytest.fixture(scope="session")
def speak() -> Callable[[str], np.ndarray]:
    """Text to 16 kHz float32 speech with espeak-ng (Debian package espeak-ng)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is required for the ASR tests: apt-get install -y espeak-ng")

    def run(text: str) -> np.ndarray:
        out = subprocess.run(
            [exe, "-v", "en-us", "-s", "150", "--stdout", text], capture_output=True, check=True, timeout=30
        ).stdout
        pcm, rate = _read_wav(out)
        return _to_float(resample(pcm, rate, RATE))

    return run


@pytest.fixture(scope="session")
def human_voice() -> Callable[[str], np.ndarray]:
    """A recorded human voice sample from alsa-utils ("Front_Center" says "front center")."""
    if not (ALSA_SOUNDS / "Front_Center.wav").is_file():
        pytest.fail("alsa-utils sound samples are required: apt-get install -y alsa-utils")

    def load(name: str) -> np.ndarray:
        pcm, rate = _read_wav(ALSA_SOUNDS / f"{name}.wav")
        return _to_float(resample(pcm, rate, RATE))

    return load


@pytest.fixture(scope="session")
def phone_line() -> Callable[[np.ndarray], np.ndarray]:
    """16 kHz audio through the telephone path: down to 8 kHz, mu-law, decode, back up to 16 kHz."""

    def run(pcm: np.ndarray) -> np.ndarray:
        narrow = resample(pcm, RATE, 8000)
        return _to_float(resample(ulaw_decode(ulaw_encode(narrow)), 8000, RATE))

    return run


@pytest.fixture(scope="session")
def wer() -> Callable[[list[tuple[str, str]]], float]:
    """Corpus word error rate over (reference, hypothesis) pairs."""

    def run(pairs: list[tuple[str, str]]) -> float:
        errors = total = 0
        for ref, hyp in pairs:
            e, n = word_errors(ref, hyp)
            errors, total = errors + e, total + n
        return errors / total

    return run


@pytest.fixture(scope="session")
def tiny_engine() -> Iterator[object]:
    from phoneagent.asr.engines.base import create_engine

    engine = create_engine("faster-whisper", model="tiny.en", cpu_threads=1)
    engine.load()
    yield engine
    engine.close()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """The whisperx stand-ins installed (see whisperx_standin); what they were called with."""
    yield install(monkeypatch)
    uninstall()
