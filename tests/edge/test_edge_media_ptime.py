"""Packet times other than 20 ms: 10, 30, 40 and 60 ms packets are re-framed into 20 ms frames
(jitter buffer and RTP session), and our SDP answer asks for 20 ms."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
from phoneagent.audio.g711 import PCMU
from phoneagent.edge.media.jitter import JitterBuffer, PushResult
from phoneagent.edge.media.pacer import Pacer
from phoneagent.edge.media.rtp import RtpPacket
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.sip.sdp import MediaParams, answer, negotiated, parse_sdp

FRAME = 160  # 20 ms at 8 kHz
TS0 = 5000


def encoded_tone(ms: int) -> bytes:
    """A rising chirp (200 Hz to 2 kHz), µ-law, ``ms`` long: no 10 ms of it repeats."""
    t = np.arange(8 * ms) / 8000.0
    freq = 200 + 1800 * t / t[-1]
    pcm = 6000 * np.sin(2 * np.pi * np.cumsum(freq) / 8000.0)
    return PCMU.encode(pcm.astype(np.int16))


def packets(audio: bytes, ptime_ms: int) -> list[tuple[float, int, bytes]]:
    """(send time in seconds, RTP timestamp, payload) for ``audio`` cut into ``ptime_ms`` packets."""
    size = 8 * ptime_ms
    return [(i / size * ptime_ms / 1000, TS0 + i, audio[i : i + size]) for i in range(0, len(audio), size)]


def expected(audio: bytes, n: int) -> np.ndarray:
    return PCMU.decode(audio[n * FRAME : (n + 1) * FRAME])


def play(jb: JitterBuffer, sent: list[tuple[float, int, bytes]], pulls: int) -> list:
    frames, i = [], 0
    for k in range(pulls):
        now = k * 0.02 + 0.005
        while i < len(sent) and sent[i][0] <= now:
            assert jb.push(sent[i][1], sent[i][2], sent[i][0]) is PushResult.ACCEPTED
            i += 1
        frames.append(jb.pull())
    return frames


@pytest.mark.parametrize("ptime", [10, 30, 40, 60])
def test_packets_of_any_10ms_multiple_play_as_continuous_20ms_frames(ptime: int) -> None:
    audio = encoded_tone(1200)  # 60 frames
    jb = JitterBuffer(min_delay_ms=60)
    frames = play(jb, packets(audio, ptime), 90)
    played = [f for f in frames if f.timestamp is not None]
    assert [(f.timestamp - TS0) // FRAME for f in played] == list(range(60))
    span = [i for i, f in enumerate(frames) if f.timestamp is not None]
    gaps = sum(f.concealed for f in frames[span[0] : span[-1] + 1])
    # No loss concealment; at most one frame of delay added while the buffer adapts to 60 ms bursts.
    assert gaps == jb.stats.stretched <= (1 if ptime == 60 else 0)
    for n, f in enumerate(played):
        assert f.pcm.shape == (FRAME,)
        np.testing.assert_array_equal(f.pcm, expected(audio, n))
    assert jb.stats.malformed == 0 and jb.stats.partial == 0


def test_lost_10ms_packet_leaves_its_half_silent_and_keeps_the_other() -> None:
    audio = encoded_tone(600)  # 30 frames
    sent = [p for p in packets(audio, 10) if p[1] != TS0 + 21 * 80]  # half 21: second half of frame 10
    jb = JitterBuffer(min_delay_ms=60)
    frames = play(jb, sent, 50)
    by_frame = {(f.timestamp - TS0) // FRAME: f for f in frames if f.timestamp is not None}
    assert sorted(by_frame) == list(range(30))
    ten = by_frame[10].pcm
    np.testing.assert_array_equal(ten[:80], expected(audio, 10)[:80])
    assert not ten[80:].any()
    np.testing.assert_array_equal(by_frame[11].pcm, expected(audio, 11))
    assert jb.stats.partial == 1


def test_payload_not_a_multiple_of_10ms_is_still_malformed() -> None:
    jb = JitterBuffer()
    assert jb.push(0, b"\xff" * 100, 0.0) is PushResult.MALFORMED
    assert jb.push(0, b"\xff" * 81, 0.0) is PushResult.MALFORMED


@pytest.mark.parametrize("ptime", [10, 30])
async def test_rtp_session_receives_10ms_and_30ms_packet_streams(ptime: int) -> None:
    session = await RtpSession.open("127.0.0.1", 46000, 46999)
    audio = encoded_tone(1200)
    sent = packets(audio, ptime)
    got: list[np.ndarray] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        session.start(
            MediaParams("127.0.0.1", sock.getsockname()[1], 0, "PCMU", 8000, 101, ptime, "sendrecv")
        )

        async def send() -> None:
            loop = asyncio.get_running_loop()
            begin = loop.time()
            for seq, (at, ts, payload) in enumerate(sent):
                await asyncio.sleep(max(0.0, begin + at - loop.time()))
                sock.sendto(RtpPacket(0, seq, ts, 0xBEEF, payload).to_bytes(), ("127.0.0.1", session.port))

        async def pull() -> None:
            pacer = Pacer(0.02)
            for _ in range(90):  # the call flow's 20 ms clock
                await pacer.next_tick()
                frame = session.pull_frame()
                if frame is not None:
                    got.append(frame)

        try:
            await asyncio.gather(send(), pull())
        finally:
            session.close()
    assert session._jitter is not None
    assert session._jitter.stats.pushed == len(sent) and session._jitter.stats.malformed == 0
    frames = [expected(audio, n) for n in range(60)]
    heard = [next((n for n, e in enumerate(frames) if np.array_equal(e, f)), None) for f in got if f.any()]
    # Every 20 ms frame was heard once, in order (concealment frames, which match none, aside).
    assert [n for n in heard if n is not None] == list(range(60))


def test_answer_to_a_30ms_offer_asks_for_20ms() -> None:
    offer_text = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n"
    )
    remote = parse_sdp(offer_text)
    ours = answer(remote, address="127.0.0.1", port=41000)
    assert b"a=ptime:20\r\n" in ours.encode()
    assert negotiated(remote, ours).ptime == 30  # what the peer sends; we re-frame it
