"""Streaming voice activity detection with Silero VAD v6 (ONNX, no torch).

The model file ships inside the faster-whisper package (``assets/silero_vad_v6.onnx``) and
is checked against a pinned sha256 (that of faster-whisper 1.2.1, the version the ``asr``
extra pins) before it is loaded, like every other weight file.
Its ONNX graph takes ``input`` of shape (windows, 64 + 512): each 512-sample window at
16 kHz prefixed by the last 64 samples before it, plus LSTM state ``h`` and ``c`` of
shape (1, 1, 128); it returns one speech probability per window and the new state.
One :class:`SileroVad` holds the state of one audio stream (one call); the ONNX session
is shared by all streams of a process.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError, verify

VAD_RATE = 16000
WINDOW = 512
CONTEXT = 64
_STATE_SHAPE = (1, 1, 128)
SILERO_SHA256 = "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2"

_session_lock = threading.Lock()
_sessions: dict[Path, Any] = {}
_verified: dict[Path, str] = {}  # path -> digest already checked in this process


class SpeechDetector(Protocol):
    """Per-stream speech probability for fixed windows of ``window`` samples at 16 kHz."""

    window: int

    def probability(self, window: np.ndarray) -> float: ...

    def reset(self) -> None: ...


def silero_model_path() -> Path:
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError("Silero VAD model is not installed", extra="asr", package="faster-whisper")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise MissingModelError("Silero VAD v6 model file is missing", extra="asr", package="faster-whisper")
    with _session_lock:
        if _verified.get(path) != SILERO_SHA256:
            verify(path, SILERO_SHA256, extra="asr", package="faster-whisper")
            _verified[path] = SILERO_SHA256
    return path


def _shared_session(path: Path) -> Any:
    with _session_lock:
        session = _sessions.get(path)
        if session is None:
            try:
                import onnxruntime
            except ImportError as exc:
                raise MissingModelError(
                    "onnxruntime is not installed", extra="asr", package="onnxruntime"
                ) from exc
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            session = onnxruntime.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            _check_signature(session)
            _sessions[path] = session
        return session


def _check_signature(session: Any) -> None:
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if set(inputs) != {"input", "h", "c"} or inputs["input"][-1] != WINDOW + CONTEXT:
        raise MissingModelError(
            "Silero VAD model has an unexpected signature", extra="asr", package="faster-whisper"
        )


class SileroVad:
    """Stateful Silero VAD for one stream: call :meth:`probability` on consecutive windows."""

    window = WINDOW

    def __init__(self, model_path: Path | None = None) -> None:
        self._session = _shared_session(model_path or silero_model_path())
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def probability(self, window: np.ndarray) -> float:
        if window.shape != (WINDOW,):
            raise InvalidArgument(f"VAD windows must be {WINDOW} samples at {VAD_RATE} Hz")
        x = np.concatenate([self._context, window.astype(np.float32, copy=False)])[None, :]
        probs, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = x[0, -CONTEXT:].copy()
        return float(np.asarray(probs).reshape(-1)[0])
