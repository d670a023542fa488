"""Small PCM helpers: dtype normalisation and levels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from phoneagent.runtime.errors import InvalidArgument

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]

_SCALE = 32768.0


def as_int16(pcm: npt.ArrayLike) -> Int16Array:
    """Return ``pcm`` as a 1-D int16 array.

    int16 input is returned as is (no copy). Float input is taken as full scale +-1.0,
    rounded and clipped. Anything else is an :class:`InvalidArgument`.
    """
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise InvalidArgument(f"PCM must be one-dimensional, got {arr.ndim} dimensions")
    if arr.dtype == np.int16:
        return arr
    if arr.dtype.kind == "f":
        return float_to_int16(arr.astype(np.float32))
    raise InvalidArgument(f"PCM must be int16 or float, got {arr.dtype}")


def as_float32(pcm: npt.ArrayLike) -> Float32Array:
    """Return ``pcm`` as a 1-D float32 array with full scale +-1.0 (int16 is divided by 32768)."""
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise InvalidArgument(f"PCM must be one-dimensional, got {arr.ndim} dimensions")
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / np.float32(_SCALE)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    raise InvalidArgument(f"PCM must be int16 or float, got {arr.dtype}")


def float_to_int16(pcm: Float32Array) -> Int16Array:
    """Full-scale float samples to int16 with rounding and clipping."""
    out: Int16Array = np.clip(np.rint(pcm * _SCALE), -32768, 32767).astype(np.int16)
    return out


def rms_dbfs(pcm: Int16Array) -> float:
    """Root-mean-square level in dB relative to int16 full scale (-100 for digital silence)."""
    if pcm.size == 0:
        return -100.0
    x = pcm.astype(np.float32)
    power = float(np.dot(x, x)) / (pcm.size * _SCALE * _SCALE)
    return 10.0 * float(np.log10(power + 1e-10))
