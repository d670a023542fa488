"""RTP packets (RFC 3550 section 5.1): parse, build, and sequence/timestamp arithmetic.

Parsing never trusts the input: anything malformed raises :class:`RtpError` with a
short ``reason`` suitable for a metric label, and never another exception type.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from phoneagent.runtime.errors import ErrorKind, PhoneAgentError

RTP_VERSION = 2
HEADER_SIZE = 12
MAX_PACKET_SIZE = 1500
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32

_FIXED = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")


class RtpError(PhoneAgentError):
    """A datagram that is not a valid RTP packet. ``reason`` is a fixed, short label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(ErrorKind.INVALID_ARGUMENT, message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """A header extension (RFC 3550 section 5.3.1): 16-bit profile value and 32-bit-aligned data."""

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = field(default=0, compare=False)  # padding bytes seen on parse / to add on build

    def to_bytes(self) -> bytes:
        return build_rtp(self)


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse one RTP datagram; :class:`RtpError` if it is not valid RTP."""
    buf = bytes(data)
    if len(buf) < HEADER_SIZE:
        raise RtpError("truncated", f"RTP packet too short ({len(buf)} bytes)")
    if len(buf) > 65535:
        raise RtpError("oversized", "RTP packet larger than a UDP datagram")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(buf)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError("version", f"RTP version {b0 >> 6} is not 2")
    payload_type = b1 & 0x7F
    if 72 <= payload_type <= 76:
        raise RtpError("rtcp", "packet looks like RTCP, not RTP")
    end = len(buf)
    padding = 0
    if b0 & 0x20:
        padding = buf[-1]
        if padding == 0:
            raise RtpError("padding", "RTP padding flag set with a zero padding count")
        end -= padding
    offset = HEADER_SIZE + 4 * (b0 & 0x0F)
    if offset > end:
        raise RtpError("truncated", "RTP CSRC list runs past the end of the packet")
    csrcs = struct.unpack_from(f"!{b0 & 0x0F}I", buf, HEADER_SIZE)
    extension = None
    if b0 & 0x10:
        extension, offset = _parse_extension(buf, offset, end)
    return RtpPacket(
        payload_type=payload_type,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=buf[offset:end],
        marker=bool(b1 & 0x80),
        csrcs=csrcs,
        extension=extension,
        padding=padding,
    )


def _parse_extension(buf: bytes, offset: int, end: int) -> tuple[RtpExtension, int]:
    if offset + 4 > end:
        raise RtpError("truncated", "RTP header extension runs past the end of the packet")
    profile, words = _EXT.unpack_from(buf, offset)
    start = offset + 4
    stop = start + 4 * words
    if stop > end:
        raise RtpError("truncated", "RTP header extension runs past the end of the packet")
    return RtpExtension(profile, buf[start:stop]), stop


def build_rtp(packet: RtpPacket) -> bytes:
    """Serialise ``packet``; :class:`RtpError` when a field is out of range."""
    _check_range("payload_type", packet.payload_type, 0x7F)
    _check_range("sequence", packet.sequence, SEQ_MOD - 1)
    _check_range("timestamp", packet.timestamp, TS_MOD - 1)
    _check_range("ssrc", packet.ssrc, TS_MOD - 1)
    if len(packet.csrcs) > 15:
        raise RtpError("csrc", "at most 15 CSRCs fit in an RTP header")
    if not 0 <= packet.padding <= 255:
        raise RtpError("padding", "RTP padding must be 0..255 bytes")
    b0 = (RTP_VERSION << 6) | len(packet.csrcs)
    if packet.padding:
        b0 |= 0x20
    if packet.extension is not None:
        b0 |= 0x10
    b1 = packet.payload_type | (0x80 if packet.marker else 0)
    parts = [_FIXED.pack(b0, b1, packet.sequence, packet.timestamp, packet.ssrc)]
    for csrc in packet.csrcs:
        _check_range("csrc", csrc, TS_MOD - 1)
        parts.append(struct.pack("!I", csrc))
    if packet.extension is not None:
        parts.append(_build_extension(packet.extension))
    parts.append(bytes(packet.payload))
    if packet.padding:
        parts.append(bytes(packet.padding - 1) + bytes([packet.padding]))
    return b"".join(parts)


def _build_extension(ext: RtpExtension) -> bytes:
    _check_range("extension profile", ext.profile, 0xFFFF)
    if len(ext.data) % 4:
        raise RtpError("extension", "RTP header extension data must be a multiple of 4 bytes")
    if len(ext.data) // 4 > 0xFFFF:
        raise RtpError("extension", "RTP header extension data too long")
    return _EXT.pack(ext.profile, len(ext.data) // 4) + ext.data


def _check_range(name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise RtpError("field", f"RTP {name} must be an integer in 0..{maximum}")


def seq_delta(a: int, b: int) -> int:
    """Signed distance from sequence ``b`` to ``a`` modulo 2**16, in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_delta(a: int, b: int) -> int:
    """Signed distance from timestamp ``b`` to ``a`` modulo 2**32, in [-2**31, 2**31 - 1]."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def seq_add(seq: int, n: int) -> int:
    return (seq + n) & 0xFFFF


def ts_add(ts: int, n: int) -> int:
    return (ts + n) & 0xFFFFFFFF


class Unwrapper:
    """Extends a wrapping counter (16-bit sequence or 32-bit timestamp) to an unbounded integer.

    Each value is placed nearest the highest value seen so far, so late (reordered)
    values by less than half the range come out below it.
    """

    def __init__(self, bits: int) -> None:
        self._mod = 1 << bits
        self._half = self._mod >> 1
        self._last: int | None = None

    def unwrap(self, value: int) -> int:
        if self._last is None:
            self._last = value
            return value
        delta = ((value - self._last + self._half) % self._mod) - self._half
        extended = self._last + delta
        self._last = max(self._last, extended)
        return extended

    def reset(self) -> None:
        self._last = None
