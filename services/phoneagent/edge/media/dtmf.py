"""DTMF as RTP telephone events (RFC 4733 section 2.3).

Payload: event (8 bits), end flag, reserved bit, volume (6 bits, -dBm0), duration
(16 bits, in RTP clock units). All packets of one event carry the event's start
timestamp; the sender repeats updates while the key is held and sends the final
packet, with the end flag, three times.

:class:`DtmfReceiver` turns such a packet stream into each digit exactly once, also
when the start, some updates or all end packets are lost. Digits are caller data:
this module never logs them.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from phoneagent.edge.media.rtp import Unwrapper
from phoneagent.runtime.errors import InvalidArgument

EVENT_CHARS = "0123456789*#ABCD"
FLASH = 16
_PAYLOAD = struct.Struct("!BBH")
_MAX_DURATION = 0xFFFF


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def to_bytes(self) -> bytes:
        return encode_event(self)


def event_for_digit(digit: str) -> int:
    if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in EVENT_CHARS:
        raise InvalidArgument("DTMF digit must be one of 0-9, *, #, A-D")
    return EVENT_CHARS.index(digit.upper())


def digit_for_event(event: int) -> str | None:
    """The DTMF character for an event code, or None for other events (flash, tones)."""
    return EVENT_CHARS[event] if 0 <= event < len(EVENT_CHARS) else None


def encode_event(ev: TelephoneEvent) -> bytes:
    if not 0 <= ev.event <= 255 or not 0 <= ev.volume <= 63 or not 0 <= ev.duration <= _MAX_DURATION:
        raise InvalidArgument("telephone event field out of range")
    return _PAYLOAD.pack(ev.event, (0x80 if ev.end else 0) | ev.volume, ev.duration)


def decode_event(payload: bytes) -> TelephoneEvent:
    """Decode the first event block of a payload (RFC 4733 allows redundant blocks only via RFC 2198)."""
    if len(payload) < _PAYLOAD.size:
        raise InvalidArgument(f"telephone event payload too short ({len(payload)} bytes)")
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """One key press. ``timestamp`` is the RTP timestamp of the event start; ``ended`` is false
    when no end packet arrived and the digit was closed by a later event or a timeout."""

    digit: str
    duration_ms: float
    timestamp: int
    ended: bool


@dataclass(slots=True)
class _Current:
    ext_ts: int
    event: int
    duration: int
    last_seen: float


class DtmfReceiver:
    """Reassemble telephone-event packets into digits, each reported once.

    Call :meth:`on_packet` for every packet of the telephone-event payload type and
    :meth:`poll` now and then (each 20 ms tick is fine): a digit whose end packets were
    all lost is reported ``timeout`` seconds after its last packet.
    """

    def __init__(self, clock_rate: int = 8000, timeout: float = 0.3, remember: int = 32) -> None:
        self.clock_rate = clock_rate
        self.timeout = timeout
        self._ts = Unwrapper(32)
        self._current: _Current | None = None
        self._done: deque[int] = deque(maxlen=remember)
        self.malformed = 0

    def on_packet(self, timestamp: int, payload: bytes, now: float) -> list[DtmfDigit]:
        """Feed one packet (its RTP timestamp and payload) received at ``now``; returns finished digits."""
        try:
            ev = decode_event(payload)
        except InvalidArgument:
            self.malformed += 1
            return []
        ext = self._ts.unwrap(timestamp)
        if ext in self._done:
            return []  # a redundant end packet, or an update that arrived after the end
        out: list[DtmfDigit] = []
        cur = self._current
        if cur is not None and cur.ext_ts != ext:
            if ext < cur.ext_ts:
                return []  # a stray packet of an older event
            out.extend(self._close(ended=False))
            cur = None
        if cur is None:
            cur = self._current = _Current(ext, ev.event, ev.duration, now)
        cur.duration = max(cur.duration, ev.duration)
        cur.last_seen = now
        if ev.end:
            out.extend(self._close(ended=True))
        return out

    def poll(self, now: float) -> list[DtmfDigit]:
        cur = self._current
        if cur is not None and now - cur.last_seen >= self.timeout:
            return self._close(ended=False)
        return []

    def _close(self, *, ended: bool) -> list[DtmfDigit]:
        cur = self._current
        self._current = None
        if cur is None:
            return []
        self._done.append(cur.ext_ts)
        digit = digit_for_event(cur.event)
        if digit is None:
            return []
        ms = cur.duration * 1000.0 / self.clock_rate
        return [DtmfDigit(digit, ms, cur.ext_ts & 0xFFFFFFFF, ended)]


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """One packet to send: when (ms after the key press starts), marker bit, and payload.
    All packets of a digit share one RTP timestamp (the event start)."""

    offset_ms: int
    marker: bool
    payload: bytes


def dtmf_packets(
    digit: str,
    duration_ms: int = 100,
    *,
    clock_rate: int = 8000,
    interval_ms: int = 20,
    volume: int = 10,
    end_repeats: int = 3,
) -> list[DtmfPacket]:
    """The packet sequence for one key press of ``duration_ms``.

    The first packet carries the marker bit; each update reports the duration so far,
    one every ``interval_ms``; the final duration is sent ``end_repeats`` times with the
    end flag, one interval apart.
    """
    event = event_for_digit(digit)
    if interval_ms <= 0 or not 0 < duration_ms or end_repeats < 1:
        raise InvalidArgument("DTMF duration, interval and end repeats must be positive")
    step = clock_rate * interval_ms // 1000
    total = clock_rate * duration_ms // 1000
    if total > _MAX_DURATION:
        raise InvalidArgument("DTMF duration too long for one event (at most 8 s at 8 kHz)")
    packets: list[DtmfPacket] = []
    elapsed = 0
    offset = 0
    while True:
        elapsed = min(elapsed + step, total)
        end = elapsed >= total
        ev = TelephoneEvent(event, end=end, volume=volume, duration=elapsed)
        packets.append(DtmfPacket(offset, not packets, ev.to_bytes()))
        offset += interval_ms
        if end:
            break
    for _ in range(end_repeats - 1):
        packets.append(DtmfPacket(offset, False, packets[-1].payload))
        offset += interval_ms
    return packets
