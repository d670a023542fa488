"""G.711 mu-law (PCMU) and A-law (PCMA) with numpy lookup tables.

Encoding follows the ITU-T G.711 segment layout with the rounding of the classic
public-domain reference coder, so results are bit-exact with ``audioop``: mu-law
works on the top 14 bits of a 16-bit sample, A-law on the top 13. Both tables are
built once at import (65,536 and 256 entries); encoding a 20 ms frame is one
fancy-indexing operation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from phoneagent.audio.pcm import Int16Array, as_int16
from phoneagent.runtime.errors import InvalidArgument

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value in uint16 bit-pattern order, so tables are indexed by ``pcm.view(uint16)``."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    val = _all_int16() >> 2
    negative = val < 0
    mask = np.where(negative, 0x7F, 0xFF)
    mag = np.minimum(np.abs(val), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")
    seg_safe = np.minimum(seg, 7)
    code = (seg_safe << 4) | ((mag >> (seg_safe + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    val = _all_int16() >> 3
    negative = val < 0
    mask = np.where(negative, 0x55, 0xD5)
    mag = np.where(negative, -val - 1, val)
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")
    seg_safe = np.minimum(seg, 7)
    shift = np.where(seg_safe < 2, 1, seg_safe)
    code = (seg_safe << 4) | ((mag >> shift) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    quant = a & 0x0F
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, (2 * quant + 1) << 3, (2 * quant + 33) << (seg + 2))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC = _build_ulaw_encode()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_ENC = _build_alaw_encode()
_ALAW_DEC = _build_alaw_decode()


def _codes(data: bytes | bytearray | memoryview) -> npt.NDArray[np.uint8]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgument(f"G.711 payload must be bytes, got {type(data).__name__}")
    return np.frombuffer(data, dtype=np.uint8)


def ulaw_encode(pcm: npt.ArrayLike) -> bytes:
    """int16 (or float, full scale +-1.0) PCM to mu-law bytes, one byte per sample."""
    return _ULAW_ENC[as_int16(pcm).view(np.uint16)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """mu-law bytes to int16 PCM (a new array)."""
    return _ULAW_DEC[_codes(data)]


def alaw_encode(pcm: npt.ArrayLike) -> bytes:
    """int16 (or float, full scale +-1.0) PCM to A-law bytes, one byte per sample."""
    return _ALAW_ENC[as_int16(pcm).view(np.uint16)].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """A-law bytes to int16 PCM (a new array)."""
    return _ALAW_DEC[_codes(data)]


@dataclass(frozen=True, slots=True)
class G711Codec:
    """One G.711 variant as negotiated in SDP (static payload type, 8 kHz, one byte per sample)."""

    name: str
    payload_type: int
    silence_byte: int
    encode: Callable[[npt.ArrayLike], bytes]
    decode: Callable[[bytes | bytearray | memoryview], Int16Array]
    sample_rate: int = 8000
    framed: ClassVar[bool] = False  # one payload byte per sample

    def ticks(self, data: bytes | bytearray | memoryview) -> int:
        """A payload's duration in RTP clock ticks (its length)."""
        return len(data)

    def silence(self, samples: int) -> bytes:
        """A payload of ``samples`` samples of silence."""
        return bytes([self.silence_byte]) * samples

    @property
    def clock_rate(self) -> int:
        """RTP timestamp units per second (the sample rate: one byte per sample)."""
        return self.sample_rate

    def peek(self, data: bytes | bytearray | memoryview) -> Int16Array:
        """The audio of a payload (G.711 keeps no state: the same as :meth:`decode`)."""
        return self.decode(data)


PCMU = G711Codec("PCMU", 0, ULAW_SILENCE, ulaw_encode, ulaw_decode)
PCMA = G711Codec("PCMA", 8, ALAW_SILENCE, alaw_encode, alaw_decode)

_BY_NAME = {
    "pcmu": PCMU,
    "ulaw": PCMU,
    "mulaw": PCMU,
    "mu-law": PCMU,
    "u-law": PCMU,
    "g711u": PCMU,
    "pcma": PCMA,
    "alaw": PCMA,
    "a-law": PCMA,
    "g711a": PCMA,
}


def codec_for(key: int | str) -> G711Codec:
    """The codec for an RTP payload type (0, 8) or a name (``PCMU``, ``ulaw``, ``PCMA``, ``alaw``...)."""
    if isinstance(key, bool):
        raise InvalidArgument("G.711 codec key must be a payload type or a name")
    if isinstance(key, int):
        if key == PCMU.payload_type:
            return PCMU
        if key == PCMA.payload_type:
            return PCMA
        raise InvalidArgument(f"payload type {key} is not G.711 (expected 0 or 8)")
    if isinstance(key, str):
        name = key.strip().lower()
        name = name.split("/", 1)[0]  # accept SDP rtpmap form "PCMU/8000"
        codec = _BY_NAME.get(name)
        if codec is None:
            raise InvalidArgument(f"unknown G.711 codec name {key[:32]!r}")
        return codec
    raise InvalidArgument("G.711 codec key must be a payload type or a name")
