"""Opus through PyAV's libopus: 20 ms mono packets from 16 kHz PCM, decoded back to exactly 320
samples a packet (48 kHz filtered down), packet durations read from the TOC byte, and a packet
libopus refuses played as silence of its length."""

from __future__ import annotations

import numpy as np
import pytest
from phoneagent.audio.g722 import codec_rate, open_codec
from phoneagent.audio.opus import OpusCodec, is_opus, packet_ticks
from phoneagent.runtime.errors import InvalidArgument
from support.signals import band_share, sine


@pytest.mark.parametrize("freq", [440.0, 6000.0])  # 6 kHz: above G.711's band, inside wideband
def test_opus_carries_wideband_audio_packet_by_packet(freq: float) -> None:
    enc, dec = OpusCodec(), OpusCodec()
    packets = [enc.encode(sine(freq, 320, 16000, 320 * i)) for i in range(50)]
    assert all(0 < len(p) < 320 for p in packets)  # compressed: well under 16-bit PCM's 640 bytes
    assert {packet_ticks(p) for p in packets} == {960}  # 20 ms on the 48 kHz RTP clock
    frames = [dec.decode(p) for p in packets]
    assert {len(f) for f in frames} == {320} and frames[0].dtype == np.int16
    audio = np.concatenate(frames)
    assert band_share(audio[3200:], 16000, freq) > 0.8
    level = np.sqrt(np.mean(audio[3200:].astype(np.float64) ** 2))
    assert 0.5 * 6000 / np.sqrt(2) < level < 1.5 * 6000 / np.sqrt(2)
    assert (enc.sample_rate, enc.clock_rate, enc.framed) == (16000, 48000, True)
    assert len(dec.peek(packets[10])) == 960  # a level estimate, at 48 kHz


def test_opus_refused_packet_plays_as_silence_and_bad_frames_are_refused() -> None:
    dec = OpusCodec()
    corrupt = bytes([(1 << 3) | 3, 0x41])  # 20 ms by its TOC; padding flagged but none follows
    assert packet_ticks(corrupt) == 960
    out = dec.decode(corrupt)
    assert len(out) == 320 and not out.any()
    good = OpusCodec().encode(sine(440, 320, 16000))
    assert len(dec.decode(good)) == 320  # the decoder goes on after a refused packet
    with pytest.raises(InvalidArgument):
        dec.encode(np.zeros(160, np.int16))


@pytest.mark.parametrize(
    ("packet", "ticks"),
    [
        (bytes([(1 << 3) | 0]), 960),  # SILK NB 20 ms, one frame
        (bytes([(3 << 3) | 0]), 2880),  # SILK NB 60 ms
        (bytes([(13 << 3) | 1]), 1920),  # hybrid SWB 20 ms, two frames
        (bytes([(16 << 3) | 0]), 120),  # CELT NB 2.5 ms
        (bytes([(31 << 3) | 3, 3]), 2880),  # CELT FB 20 ms, three frames (code 3)
        (bytes([(31 << 3) | 3]), 0),  # code 3 without its count byte
        (b"", 0),
    ],
)
def test_packet_duration_from_the_toc_byte(packet: bytes, ticks: int) -> None:
    assert packet_ticks(packet) == ticks


def test_open_codec_and_rate_know_opus() -> None:
    assert isinstance(open_codec("opus"), OpusCodec) and isinstance(open_codec("OPUS"), OpusCodec)
    assert codec_rate("OPUS") == 16000 and codec_rate("opus/48000/2") == 16000
    assert is_opus("opus/48000") and not is_opus("G722")
