"""RtpSession when a re-INVITE changes the media: new address, codec, hold, and a new SSRC."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
from phoneagent.audio.g711 import PCMA, PCMU
from phoneagent.edge.media.rtp import RtpPacket, parse_rtp
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.sip.sdp import MediaParams
from support.common import wait_for

HOST = "127.0.0.1"


def params(port: int, pt: int = 0, direction: str = "sendrecv") -> MediaParams:
    return MediaParams(HOST, port, pt, "PCMU" if pt == 0 else "PCMA", 8000, 101, 20, direction)


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.setblocking(False)
    return s


def frame(n: int) -> np.ndarray:
    t = np.arange(160) + 160 * n
    return (5000 * np.sin(2 * np.pi * 440 * t / 8000)).astype(np.int16)


async def received(sock: socket.socket) -> list[RtpPacket]:
    await asyncio.sleep(0.05)
    out = []
    while True:
        try:
            out.append(parse_rtp(sock.recv(2048)))
        except BlockingIOError:
            return out


async def test_update_moves_the_peer_switches_codec_and_pauses_sending_on_hold() -> None:
    session = await RtpSession.open(HOST, 47000, 47999)
    first, second = udp(), udp()
    try:
        session.start(params(first.getsockname()[1]))
        session.send_audio(frame(0), True)
        assert [p.payload_type for p in await received(first)] == [0]
        # Moved to a new port, now PCMA: sent there, and the new port's packets are accepted.
        session.update(params(second.getsockname()[1], pt=8))
        session.send_audio(frame(1), True)
        got = await received(second)
        assert [p.payload_type for p in got] == [8] and not await received(first)
        np.testing.assert_array_equal(PCMA.decode(got[0].payload), PCMA.decode(PCMA.encode(frame(1))))
        for n in range(6):
            pkt = RtpPacket(8, n, 1000 + 160 * n, 0xCAFE, PCMA.encode(frame(n)))
            first.sendto(pkt.to_bytes(), (HOST, session.port))  # the old address: dropped
            second.sendto(pkt.to_bytes(), (HOST, session.port))
        await wait_for(lambda: session._jitter is not None and session._jitter.stats.pushed == 6)
        assert session.drops == 6
        # Hold (the peer's SDP says sendonly): nothing is sent until it says sendrecv again.
        session.update(params(second.getsockname()[1], pt=8, direction="sendonly"))
        session.send_audio(frame(2), True)
        assert not await received(second)
        session.update(params(second.getsockname()[1], pt=8))
        session.send_audio(frame(3), True)
        assert len(await received(second)) == 1
    finally:
        session.close()
        first.close()
        second.close()


async def test_new_ssrc_resets_the_jitter_buffer() -> None:
    """A new stream whose timestamps lie a little behind the old one plays at once instead of
    being dropped as late until the buffer gives up on the old timeline."""
    session = await RtpSession.open(HOST, 47000, 47999)
    peer = udp()
    try:
        session.start(params(peer.getsockname()[1]))
        for n in range(10):
            peer.sendto(
                RtpPacket(0, n, 8000 + 160 * n, 0xA, PCMU.encode(frame(n))).to_bytes(), (HOST, session.port)
            )
        await wait_for(lambda: session._jitter is not None and session._jitter.stats.pushed == 10)
        jb = session._jitter
        assert jb is not None
        for _ in range(10):
            jb.pull()
        for n in range(5):  # SSRC B, timestamps 20 frames behind A's
            pkt = RtpPacket(0, 500 + n, 8000 - 3200 + 160 * n, 0xB, PCMU.encode(frame(100 + n)))
            peer.sendto(pkt.to_bytes(), (HOST, session.port))
        await wait_for(lambda: session._jitter is not None and session._jitter.stats.pushed == 15)
        await asyncio.sleep(0.05)
        assert session._jitter.stats.late == 0
        played = [session._jitter.pull() for _ in range(8)]
        heard = [f.pcm for f in played if f.timestamp is not None]
        assert heard and np.array_equal(heard[0], PCMU.decode(PCMU.encode(frame(100))))
    finally:
        session.close()
        peer.close()


async def test_frames_the_jitter_buffer_discards_are_counted_when_they_are_lost() -> None:
    """``pa_caller_audio_lost_frames_total{stage="edge_jitter"}`` rises at the talk spurt that lost
    the frames, not when the call ends: a per-utterance reading (the onset benchmark's) tells
    which stage lost a caller's first words."""
    from prometheus_client import REGISTRY

    def lost() -> float:
        value = REGISTRY.get_sample_value("pa_caller_audio_lost_frames_total", {"stage": "edge_jitter"})
        return value or 0.0

    session = await RtpSession.open(HOST, 47000, 47999)
    peer = udp()
    try:
        session.start(params(peer.getsockname()[1]))
        for n in range(6):
            peer.sendto(
                RtpPacket(0, n, 8000 + 160 * n, 0xA, PCMU.encode(frame(n))).to_bytes(), (HOST, session.port)
            )
        await wait_for(lambda: session._jitter is not None and session._jitter.stats.pushed == 6)
        before = lost()
        # A new stream (SSRC B) while A's frames wait unplayed: the buffer starts afresh without them.
        pkt = RtpPacket(0, 900, 640000, 0xB, PCMU.encode(frame(50)))
        peer.sendto(pkt.to_bytes(), (HOST, session.port))
        await wait_for(lambda: session._jitter is not None and session._jitter.stats.pushed == 7)
        assert session.pull_frame() is not None
        assert lost() - before == 6
    finally:
        session.close()
        peer.close()
    assert lost() - before == 6  # closing does not count them again
