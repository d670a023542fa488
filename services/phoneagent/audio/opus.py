"""Opus (RFC 6716) on SIP calls (RFC 7587): wideband audio at 16 kHz for the engines.

libopus through PyAV (``av``, which aiortc brings in the ``edge`` extra). The RTP clock of Opus
is always 48000 Hz and its SDP names two channels (``opus/48000/2``) whatever is sent. We
encode mono 16 kHz frames (the call's rate: what TTS gives and ASR wants), one 20 ms packet
each; libopus decodes at 48 kHz (FFmpeg's wrapper fixes that rate), which is filtered down to
16 kHz and handed out exactly one 20 ms frame (320 samples) per packet, the resampler's small
start-up delay taken up by leading silence. Payloads are whole packets, not bytes per clock
tick: :meth:`OpusCodec.ticks` reads a packet's duration from its TOC byte (RFC 6716 section
3.1). Encoder and decoder keep state: one :class:`OpusCodec` per RTP stream.
"""

from __future__ import annotations

import fractions
from typing import Any

import numpy as np
import numpy.typing as npt

from phoneagent.audio.pcm import Int16Array, as_int16
from phoneagent.audio.resample import StreamResampler
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError

OPUS_CLOCK = 48000  # RTP timestamp units per second (RFC 7587), and libopus's decoding rate
OPUS_RATE = 16000  # the PCM rate on our side of the codec
OPUS_BITRATE = 32000  # plenty for wideband speech
OPUS_DEFAULT_PT = 111  # the dynamic payload type in our offers
# fmtp of our SDP: we play and capture at 16 kHz, so the peer need not send fullband audio
OPUS_FMTP = "maxplaybackrate=16000;sprop-maxcapturerate=16000"

_SILK_MS = (10, 20, 40, 60)
_CELT_MS = (2.5, 5, 10, 20)


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingModelError("Opus needs PyAV (av)", extra="edge", package="av") from exc
    return av


def packet_ticks(data: bytes | bytearray | memoryview) -> int:
    """The duration of an Opus packet in 48 kHz ticks, from its TOC byte (and frame count byte);
    0 for a packet too short to say."""
    if len(data) < 1:
        return 0
    toc = data[0]
    config, code = toc >> 3, toc & 3
    if config < 12:
        frame_ms: float = _SILK_MS[config % 4]
    elif config < 16:
        frame_ms = 10 if config % 2 == 0 else 20
    else:
        frame_ms = _CELT_MS[config % 4]
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(data) < 2:
            return 0
        frames = data[1] & 0x3F
    return int(frames * frame_ms * OPUS_CLOCK / 1000)


class OpusCodec:
    """One RTP stream's Opus encoder and decoder (mono, 16 kHz PCM, 20 ms packets)."""

    name = "OPUS"
    payload_type = OPUS_DEFAULT_PT  # the call's payload type is the SDP's, not this
    sample_rate = OPUS_RATE
    clock_rate = OPUS_CLOCK
    framed = True  # a payload is one packet: its duration is ticks(), not its length

    def __init__(self) -> None:
        av = _av()
        self._frame_cls = av.AudioFrame
        self._packet_cls = av.packet.Packet
        self._refused = av.error.FFmpegError
        enc = av.CodecContext.create("libopus", "w")
        enc.sample_rate = OPUS_RATE
        enc.format = "s16"
        enc.layout = "mono"
        enc.bit_rate = OPUS_BITRATE
        enc.time_base = fractions.Fraction(1, OPUS_RATE)
        enc.options = {"application": "voip", "frame_duration": "20"}
        self._encoder = enc
        self._pts = 0
        self._decoder = self._new_decoder(av)
        self._peeker = self._new_decoder(av)
        self._down = StreamResampler(OPUS_CLOCK, OPUS_RATE)
        self._pending = np.zeros(0, np.int16)
        self._primed = False

    @staticmethod
    def _new_decoder(av: Any) -> Any:
        dec = av.CodecContext.create("libopus", "r")
        dec.sample_rate = OPUS_CLOCK
        dec.format = "s16"
        dec.layout = "mono"
        return dec

    def ticks(self, data: bytes | bytearray | memoryview) -> int:
        return packet_ticks(data)

    def encode(self, pcm: npt.ArrayLike) -> bytes:
        """20 ms of 16 kHz int16 PCM (320 samples) to one Opus packet."""
        samples = as_int16(pcm)
        if len(samples) != OPUS_RATE // 50:
            raise InvalidArgument("Opus encodes 20 ms frames (320 samples at 16 kHz)")
        frame = self._frame_cls.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = OPUS_RATE
        frame.pts = self._pts
        self._pts += len(samples)
        return b"".join(bytes(p) for p in self._encoder.encode(frame))

    def _decode48(self, decoder: Any, data: bytes | bytearray | memoryview) -> Int16Array:
        try:
            frames = decoder.decode(self._packet_cls(bytes(data)))
        except self._refused:  # libopus refused the packet (corrupt): the caller plays silence
            return np.zeros(0, np.int16)
        if not frames:
            return np.zeros(0, np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16, copy=False)

    def decode(self, data: bytes | bytearray | memoryview) -> Int16Array:
        """One packet to exactly its duration of 16 kHz int16 PCM (call in order; a packet libopus
        refuses gives silence)."""
        want = packet_ticks(data) * OPUS_RATE // OPUS_CLOCK
        pcm = self._decode48(self._decoder, data)
        if len(pcm) == 0:
            pcm = np.zeros(want * OPUS_CLOCK // OPUS_RATE, np.int16)
        down = self._down.process(pcm)
        if not self._primed:  # the filters' start-up delay, once: silence in front
            self._primed = True
            down = np.concatenate([np.zeros(max(0, want - len(down)), np.int16), down])
        self._pending = np.concatenate([self._pending, down])[-4 * max(want, 1) :]  # bounded
        out, self._pending = self._pending[:want], self._pending[want:]
        if len(out) < want:
            out = np.pad(out, (0, want - len(out)))
        return out.astype(np.int16, copy=False)

    def peek(self, data: bytes | bytearray | memoryview) -> Int16Array:
        """A packet's audio for its level (its own decoder, fed out of order: not for playing),
        at 48 kHz."""
        return self._decode48(self._peeker, data)


def is_opus(name: str) -> bool:
    return name.strip().upper() in ("OPUS", "OPUS/48000", "OPUS/48000/2")
