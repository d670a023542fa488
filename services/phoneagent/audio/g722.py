"""G.722 (ITU-T, 64 kbit/s sub-band ADPCM): 16 kHz wideband audio for SIP calls.

A wrapper around the ``g722`` package (a C extension, ``import G722``). ADPCM keeps state from
frame to frame, so every call direction needs its own encoder and decoder:
:func:`open_codec` gives a fresh :class:`G722Codec` for G.722 (or
:class:`~phoneagent.audio.opus.OpusCodec` for Opus) and the shared, stateless
:class:`~phoneagent.audio.g711.G711Codec` for G.711. In SDP and in RTP timestamps G.722 runs at
8000 Hz (RFC 3551, a historical error kept for compatibility) while its audio is sampled at
16000 Hz: ``clock_rate`` and ``sample_rate`` differ. A 20 ms frame is 320 samples in, 160 bytes
on the wire (as for G.711, one byte per RTP clock tick). Encoding plus decoding a 20 ms frame
takes about 30 microseconds.

``g722`` is part of the ``edge`` extra.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from phoneagent.audio.g711 import codec_for
from phoneagent.audio.opus import OpusCodec, is_opus
from phoneagent.audio.pcm import Int16Array, as_int16
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError

G722_PAYLOAD_TYPE = 9
G722_RATE = 16000
G722_BITRATE = 64000


class RtpCodec(Protocol):
    """What the RTP session and jitter buffer need of a codec."""

    @property
    def name(self) -> str: ...
    @property
    def payload_type(self) -> int: ...
    @property
    def sample_rate(self) -> int: ...  # PCM samples per second
    @property
    def clock_rate(self) -> int: ...  # RTP timestamp units per second
    @property
    def framed(self) -> bool: ...  # payloads are whole packets (Opus), not one byte per clock tick

    def ticks(self, data: bytes | bytearray | memoryview) -> int: ...  # a payload's duration

    def encode(self, pcm: npt.ArrayLike) -> bytes: ...
    def decode(self, data: bytes | bytearray | memoryview) -> Int16Array: ...
    def peek(self, data: bytes | bytearray | memoryview) -> Int16Array: ...


def _library() -> Any:
    try:
        import G722
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingModelError("the G.722 codec is not installed", extra="edge", package="g722") from exc
    return G722


class G722Codec:
    """One call's G.722 encoder and decoder (stateful: use one instance per RTP stream)."""

    name = "G722"
    payload_type = G722_PAYLOAD_TYPE
    sample_rate = G722_RATE
    clock_rate = 8000
    framed = False

    def __init__(self) -> None:
        lib = _library()
        self._encoder = lib.G722(G722_RATE, G722_BITRATE)
        self._decoder = lib.G722(G722_RATE, G722_BITRATE)
        self._peeker = lib.G722(G722_RATE, G722_BITRATE)

    def ticks(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)

    def encode(self, pcm: npt.ArrayLike) -> bytes:
        """16 kHz int16 PCM (an even number of samples) to G.722 bytes (one per two samples)."""
        samples = as_int16(pcm)
        if len(samples) % 2:
            raise InvalidArgument("G.722 encodes an even number of samples")
        return bytes(self._encoder.encode(samples))

    def decode(self, data: bytes | bytearray | memoryview) -> Int16Array:
        """G.722 bytes to 16 kHz int16 PCM, continuing this stream's decoder state (call in order)."""
        return np.frombuffer(self._decoder.decode(bytes(data)), dtype=np.int16).copy()

    def peek(self, data: bytes | bytearray | memoryview) -> Int16Array:
        """An estimate of a frame's audio without disturbing the decoder (its own decoder state, fed
        frames out of order: good for a level, not for playing)."""
        return np.frombuffer(self._peeker.decode(bytes(data)), dtype=np.int16).copy()


def codec_rate(name: str) -> int:
    """The PCM rate of a codec named in settings or SDP (16000 for G.722 and Opus, 8000 for G.711)."""
    return G722_RATE if name.strip().upper() in ("G722", "G722/8000") or is_opus(name) else 8000


def open_codec(key: int | str) -> RtpCodec:
    """A codec for an RTP stream, by name (or static payload type): a new G.722 or Opus
    instance, or G.711."""
    if key == G722_PAYLOAD_TYPE or (isinstance(key, str) and key.strip().upper() in ("G722", "G722/8000")):
        return G722Codec()
    if isinstance(key, str) and is_opus(key):
        return OpusCodec()
    return codec_for(key)
