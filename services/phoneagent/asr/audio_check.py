"""Validation of caller audio before it reaches the VAD or an engine.

Bad input (wrong rate, empty, NaN/inf, out of range, mostly clipped) is rejected with
an :class:`~phoneagent.runtime.errors.InvalidArgument` that says what is wrong; the
caller drops that frame and the session carries on.
"""

from __future__ import annotations

import numpy as np

from phoneagent.runtime.errors import InvalidArgument

EXPECTED_RATE = 16000
MAX_FRAME_S = 5.0
# Fraction of samples at full scale above which a frame is treated as clipped garbage.
CLIP_FRACTION = 0.5
_FULL_SCALE = 0.999


def from_pcm16(data: bytes) -> np.ndarray:
    """Little-endian signed 16-bit PCM bytes to float32 in [-1, 1)."""
    if len(data) % 2:
        raise InvalidArgument("PCM16 audio must have an even number of bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def is_bad_audio(pcm: np.ndarray, rate: int, *, expected_rate: int = EXPECTED_RATE) -> str | None:
    """Why ``pcm`` cannot be used, or None when it is fine."""
    if rate != expected_rate:
        return f"sample rate must be {expected_rate} Hz, got {rate}"
    if not isinstance(pcm, np.ndarray) or pcm.ndim != 1:
        return "audio must be a one-dimensional array (mono)"
    if pcm.size == 0:
        return "audio is empty"
    if pcm.size > MAX_FRAME_S * rate:
        return f"audio frame longer than {MAX_FRAME_S:g} s"
    if pcm.dtype == np.int16:
        peak = np.abs(pcm.astype(np.int32)) >= 32767
        return "audio is clipped" if peak.mean() > CLIP_FRACTION else None
    if pcm.dtype not in (np.float32, np.float64):
        return f"unsupported sample type {pcm.dtype}"
    if not np.isfinite(pcm).all():
        return "audio contains NaN or infinite samples"
    magnitude = np.abs(pcm)
    if magnitude.max() > 1.0 + 1e-6:
        return "float samples must lie in [-1, 1]"
    if (magnitude >= _FULL_SCALE).mean() > CLIP_FRACTION:
        return "audio is clipped"
    return None


def check_audio(pcm: np.ndarray, rate: int, *, expected_rate: int = EXPECTED_RATE) -> np.ndarray:
    """``pcm`` as mono float32 after validation; raises InvalidArgument when it is bad."""
    reason = is_bad_audio(pcm, rate, expected_rate=expected_rate)
    if reason is not None:
        raise InvalidArgument(reason)
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return pcm.astype(np.float32, copy=False)
