"""Smart Turn v3.2: an audio model that tells whether a speaker has finished their turn.

The ONNX file (8 MB, CPU build) ships inside the ``pipecat-ai`` wheel on PyPI
(``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx``). It is taken from there by
the model assembly, never downloaded at run time: from an installed ``pipecat-ai``
distribution when there is one, else from the copy that ``python -m phoneagent.asr.models
--smart-turn-wheel WHEEL`` extracted into the model cache (``scripts/install.sh`` fetches the
wheel with pip and runs it). Either way the bytes are checked against a pinned sha256.

The graph takes ``input_features`` of shape (batch, 80, 800): the Whisper log-mel spectrogram
(80 bins, 25 ms window, 10 ms hop) of the last 8 s of 16 kHz audio, the waveform normalised
to zero mean and unit variance first and zero-padded after it when shorter (as the model was
trained: padded in front, its scores for finished and unfinished phrases come out the same).
It returns one probability per row that the
turn is complete. The spectrogram comes from faster-whisper's numpy feature extractor (the
``asr`` extra already installs it).

Telephone audio (8 kHz G.711, upsampled to 16 kHz) has nothing above 4 kHz, and on it the model
calls almost every pause finished (a phrase cut after its first word scored 0.8, as high as
the whole phrase): the empty upper band looks to it like the end of speech. So narrowband
input gets a fixed, seeded noise above 4 kHz at a tenth of the speech's RMS before the
features are taken; with it the scores of cut and whole phrases separate again (measured on
the recorded human voice; ``python -m phoneagent.devtools.eot_bench`` reports both rates).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError, cache_dir, sha256_file, verify

log = logging.getLogger(__name__)

RATE = 16000
WINDOW_S = 8
N_SAMPLES = RATE * WINDOW_S
N_MELS = 80
N_FRAMES = 800
PACKAGE = "pipecat-ai==1.14.0"
WHEEL_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
FILE_NAME = "smart-turn-v3.2-cpu.onnx"
SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
_HINT = "run scripts/install.sh, or python -m phoneagent.asr.models --smart-turn-wheel <pipecat-ai wheel>"

_lock = threading.Lock()
_verified: dict[Path, str] = {}


def _installed() -> Path | None:
    try:
        dist = importlib.metadata.distribution("pipecat-ai")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(WHEEL_MEMBER)))
    return path if path.is_file() else None


def cached_path() -> Path:
    return cache_dir() / FILE_NAME


def model_path() -> Path:
    """The verified Smart Turn v3.2 ONNX file, or :class:`MissingModelError` saying how to get it."""
    candidates = [p for p in (_installed(), cached_path()) if p is not None and p.is_file()]
    if not candidates:
        raise MissingModelError(f"Smart Turn v3.2 model is not assembled ({_HINT})", package=PACKAGE)
    path = candidates[0]
    with _lock:
        if _verified.get(path) != SHA256:
            verify(path, SHA256, extra="asr", package=PACKAGE)
            _verified[path] = SHA256
    return path


def extract_from_wheel(wheel: Path) -> Path:
    """Copy the ONNX file out of a ``pipecat-ai`` wheel into the model cache, verified."""
    dest = cached_path()
    if dest.is_file() and sha256_file(dest) == SHA256:
        return dest
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(WHEEL_MEMBER) as src:
            tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
            try:
                with tmp.open("wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                verify(tmp, SHA256, extra="asr", package=PACKAGE)
                os.replace(tmp, dest)
            finally:
                if tmp.exists():
                    tmp.unlink()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise MissingModelError(
            f"{wheel.name} holds no Smart Turn v3.2 model ({exc.__class__.__name__})", package=PACKAGE
        ) from exc
    return dest


NARROWBAND_RATIO = 1e-3  # energy above 4 kHz, as a share of the whole, below which audio is narrowband
FILL_LEVEL = 0.1  # RMS of the noise filled above 4 kHz, relative to the audio's
_FILL = np.random.default_rng(8000).standard_normal(N_SAMPLES)
_FILL = _FILL - np.convolve(_FILL, np.ones(4) / 4, mode="same")  # mostly above 4 kHz
_FILL /= np.sqrt(np.mean(_FILL**2))


def is_narrowband(audio: np.ndarray) -> bool:
    """True when ``audio`` (16 kHz) carries next to nothing above 4 kHz (telephone speech)."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    total = float(power.sum())
    return total > 0 and float(power[len(power) // 2 :].sum()) < NARROWBAND_RATIO * total


def features(pcm: np.ndarray, extractor: Any) -> np.ndarray:
    """The model's (80, 800) input for the last 8 s of ``pcm`` (16 kHz mono float32)."""
    if pcm.dtype != np.float32 or pcm.ndim != 1 or pcm.size == 0:
        raise InvalidArgument("turn model input must be non-empty mono float32 PCM at 16 kHz")
    audio = pcm[-N_SAMPLES:].astype(np.float64)
    if is_narrowband(audio):
        audio = audio + _FILL[: len(audio)] * FILL_LEVEL * np.sqrt(np.mean(audio**2))
    audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    padded = np.zeros(N_SAMPLES, dtype=np.float32)
    padded[: len(audio)] = audio
    mel = extractor(padded, padding=0)
    return np.asarray(mel[:, :N_FRAMES], dtype=np.float32)


class SmartTurn:
    """The shared Smart Turn session of a process. ``score`` is thread-safe and blocking (~10-60 ms
    on one CPU thread): call it from a worker thread."""

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise InvalidArgument("threads must be at least 1")
        self.threads = threads
        self._session: Any = None
        self._extractor: Any = None

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_path()), opts, providers=["CPUExecutionProvider"])
        self._extractor = FeatureExtractor(feature_size=N_MELS, chunk_length=WINDOW_S)

    def score(self, pcm: np.ndarray) -> float:
        """Probability (0-1) that the speech in ``pcm`` ends a finished turn."""
        if self._session is None:
            raise InvalidArgument("turn model is not loaded")
        x = features(pcm, self._extractor)[None]
        out = self._session.run(None, {"input_features": x})[0]
        return float(np.clip(out.reshape(-1)[0], 0.0, 1.0))
