"""Sample-rate conversion for streaming 20 ms chunks and for whole buffers.

``soxr``'s filtered qualities (LQ..VHQ) hand back streaming output in bursts of about
100 ms, which would add that much latency to every reply. Its "QQ" quality (cubic
interpolation) returns output for every chunk but has no anti-aliasing filter, so
:class:`StreamResampler` runs QQ inside a short linear-phase FIR low-pass: before it
when the rate goes down (removes what would alias), after it when the rate goes up
(removes images). The filter keeps the telephone band (up to 0.425 x the lower
Nyquist rate, 3.4 kHz at 8 kHz) and is at least ~70 dB down from 0.575 x, adding
about 2-3 ms of delay.

soxr is part of the ``edge`` and ``tts`` extras.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from phoneagent.audio.pcm import Float32Array, Int16Array, as_float32, float_to_int16
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError

_PASS = 0.85  # pass-band edge as a fraction of the lower Nyquist rate
_STOP = 1.15  # stop-band edge as a fraction of the lower Nyquist rate
_ATTENUATION_DB = 75.0


def _soxr() -> Any:
    try:
        import soxr
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingModelError("the soxr resampler is not installed", extra="edge", package="soxr") from exc
    return soxr


def _check_rate(rate: int, what: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 384000:
        raise InvalidArgument(f"{what} must be an integer sample rate in Hz (1000..384000), got {rate!r}")
    return rate


def lowpass_taps(rate: int, cutoff_hz: float, transition_hz: float, attenuation_db: float) -> Float32Array:
    """Kaiser-windowed sinc low-pass taps (odd length, unity gain at DC)."""
    beta = 0.1102 * (attenuation_db - 8.7)
    width = transition_hz / rate  # normalised transition width (cycles per sample)
    count = int(math.ceil((attenuation_db - 7.95) / (14.36 * width))) + 1
    count |= 1
    n = np.arange(count) - (count - 1) / 2
    taps = 2 * cutoff_hz / rate * np.sinc(2 * cutoff_hz / rate * n) * np.kaiser(count, beta)
    out: Float32Array = (taps / taps.sum()).astype(np.float32)
    return out


class StreamingFir:
    """A linear-phase FIR applied chunk by chunk, trimmed so output aligns with input.

    The first ``delay`` outputs are held back; :meth:`flush` releases them. The total
    output length equals the total input length.
    """

    def __init__(self, taps: Float32Array) -> None:
        self._taps = taps
        self.delay = (len(taps) - 1) // 2
        self._history = np.zeros(len(taps) - 1, dtype=np.float32)
        self._to_trim = self.delay

    def process(self, x: Float32Array) -> Float32Array:
        if x.size == 0:
            return x
        buf = np.concatenate((self._history, x))
        y = np.convolve(buf, self._taps, mode="valid").astype(np.float32, copy=False)
        self._history = buf[-(len(self._taps) - 1) :]
        if self._to_trim:
            cut = min(self._to_trim, y.size)
            self._to_trim -= cut
            y = y[cut:]
        return y

    def flush(self) -> Float32Array:
        tail = self.process(np.zeros(self.delay, dtype=np.float32))
        self.reset()
        return tail

    def reset(self) -> None:
        self._history[:] = 0.0
        self._to_trim = self.delay


class StreamResampler:
    """Resample a stream of chunks with steady per-chunk output (no ~100 ms bursts).

    ``process`` accepts int16 PCM or float PCM (full scale +-1.0) and returns int16.
    ``flush`` returns what the filters still hold and makes the resampler ready for a
    new, unrelated stream.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = _check_rate(in_rate, "in_rate")
        self.out_rate = _check_rate(out_rate, "out_rate")
        self._stream: Any = None
        self._pre: StreamingFir | None = None
        self._post: StreamingFir | None = None
        if in_rate == out_rate:
            return
        low_nyquist = min(in_rate, out_rate) / 2
        cutoff = low_nyquist * (_PASS + _STOP) / 2
        transition = low_nyquist * (_STOP - _PASS)
        fir = StreamingFir(lowpass_taps(max(in_rate, out_rate), cutoff, transition, _ATTENUATION_DB))
        if out_rate < in_rate:
            self._pre = fir
        else:
            self._post = fir
        self._stream = _soxr().ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="QQ")

    @property
    def ratio(self) -> float:
        return self.out_rate / self.in_rate

    def process(self, pcm: npt.ArrayLike) -> Int16Array:
        x = as_float32(pcm)
        return float_to_int16(self._run(x, last=False))

    def flush(self) -> Int16Array:
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        pre_tail = self._pre.flush() if self._pre is not None else np.zeros(0, dtype=np.float32)
        y = self._stream.resample_chunk(pre_tail, last=True)
        if self._post is not None:
            y = np.concatenate((self._post.process(y), self._post.flush()))
        self._stream.clear()
        return float_to_int16(y)

    def reset(self) -> None:
        """Drop buffered state without producing output (e.g. on barge-in)."""
        if self._stream is not None:
            self._stream.clear()
        for fir in (self._pre, self._post):
            if fir is not None:
                fir.reset()

    def _run(self, x: Float32Array, *, last: bool) -> Float32Array:
        if self._stream is None:
            return x
        if self._pre is not None:
            x = self._pre.process(x)
        y: Float32Array = self._stream.resample_chunk(np.ascontiguousarray(x), last=last)
        if self._post is not None:
            y = self._post.process(y)
        return y


def resample(pcm: npt.ArrayLike, in_rate: int, out_rate: int) -> Int16Array:
    """Resample a whole buffer at high quality (soxr HQ); int16 or float input, int16 output."""
    _check_rate(in_rate, "in_rate")
    _check_rate(out_rate, "out_rate")
    x = as_float32(pcm)
    if in_rate == out_rate or x.size == 0:
        return float_to_int16(x)
    y = _soxr().resample(x, in_rate, out_rate, quality="HQ")
    return float_to_int16(np.asarray(y, dtype=np.float32))
