"""RtpSession with SRTP keys (forged and replayed packets dropped, what it sends decrypts at the
peer) and with G.722 (16 kHz frames, an 8000 Hz RTP clock, a codec switch keeping the call's rate)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import numpy as np
from phoneagent.audio.g711 import PCMU
from phoneagent.audio.g722 import G722Codec
from phoneagent.edge.media.rtp import RtpPacket, parse_rtp
from phoneagent.edge.media.srtp import Crypto, SrtpContext, SrtpKeys
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.sip.sdp import MediaParams
from support.common import wait_for
from support.sip_phone import band_energy

HOST = "127.0.0.1"


def params(port: int, pt: int = 0, srtp: SrtpKeys | None = None) -> MediaParams:
    name = {0: "PCMU", 9: "G722"}[pt]
    return MediaParams(HOST, port, pt, name, 8000, 101, 20, "sendrecv", srtp)


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.setblocking(False)
    return s


def sine(freq: float, samples: int, rate: int, start: int = 0) -> np.ndarray:
    t = (np.arange(samples) + start) / rate
    return (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def recv(sock: socket.socket, count: int) -> list[bytes]:
    loop = asyncio.get_running_loop()
    return [await asyncio.wait_for(loop.sock_recv(sock, 2048), 5) for _ in range(count)]


async def test_srtp_session_decrypts_drops_forged_and_replayed_packets_and_encrypts() -> None:
    ours, theirs = Crypto.new(1), Crypto.new(1)
    session = await RtpSession.open(HOST, 47000, 47999)
    peer = udp()
    peer_ctx = SrtpContext(SrtpKeys(local=theirs, remote=ours))
    try:
        session.start(params(peer.getsockname()[1], srtp=SrtpKeys(local=ours, remote=theirs)))
        assert session.encrypted
        sent = []
        for n in range(5):
            pkt = RtpPacket(0, n, 160 * n, 0xBEEF, PCMU.encode(sine(440, 160, 8000, 160 * n)))
            sent.append(peer_ctx.protect(pkt.to_bytes()))
            peer.sendto(sent[-1], (HOST, session.port))
        forged = bytearray(peer_ctx.protect(RtpPacket(0, 9, 1440, 0xBEEF, bytes(160)).to_bytes()))
        forged[20] ^= 0xFF  # one flipped payload byte: authentication fails
        peer.sendto(bytes(forged), (HOST, session.port))
        peer.sendto(sent[2], (HOST, session.port))  # a replay
        plain = RtpPacket(0, 10, 1600, 0xBEEF, bytes(160)).to_bytes()
        peer.sendto(plain, (HOST, session.port))  # unencrypted RTP on an SRTP call
        await wait_for(lambda: session.drops == 3)
        assert session._jitter is not None and session._jitter.stats.pushed == 5
        assert session._state is not None and session._state.drops["srtp"] == 3
        session.send_audio(sine(440, 160, 8000), True)
        (wire,) = await recv(peer, 1)
        assert parse_rtp(wire).payload != PCMU.encode(sine(440, 160, 8000))  # encrypted on the wire
        clear = parse_rtp(peer_ctx.unprotect(wire))
        np.testing.assert_array_equal(
            PCMU.decode(clear.payload), PCMU.decode(PCMU.encode(sine(440, 160, 8000)))
        )
        # An index libsrtp has protected before is refused: the packet is dropped, never sent in clear.
        session._seq = (session._seq - 1) & 0xFFFF
        session.send_audio(sine(440, 160, 8000), True)
        assert session.srtp_refused == 1
        session.send_audio(sine(440, 160, 8000), True)
        (wire,) = await recv(peer, 1)
        assert parse_rtp(peer_ctx.unprotect(wire)).sequence == (session._seq - 1) & 0xFFFF
        # A re-INVITE with a new peer key: packets under the old key no longer pass.
        newer = Crypto.new(1)
        assert session.params is not None
        session.update(dataclasses.replace(session.params, srtp=SrtpKeys(local=ours, remote=newer)))
        peer.sendto(
            peer_ctx.protect(RtpPacket(0, 11, 1760, 0xBEEF, bytes(160)).to_bytes()), (HOST, session.port)
        )
        await wait_for(lambda: session.drops == 4)
    finally:
        session.close()
        peer.close()


async def test_g722_session_plays_16khz_audio_on_an_8000_hz_clock() -> None:
    session = await RtpSession.open(HOST, 47000, 47999)
    peer = udp()
    encoder, decoder = G722Codec(), G722Codec()
    try:
        session.start(params(peer.getsockname()[1], pt=9))
        assert session.sample_rate == 16000
        for n in range(10):
            pcm = sine(5000, 320, 16000, 320 * n)  # above G.711's band: only wideband carries it
            pkt = RtpPacket(9, n, 160 * n, 0xACE, encoder.encode(pcm))
            assert len(pkt.payload) == 160
            peer.sendto(pkt.to_bytes(), (HOST, session.port))
        await wait_for(lambda: session._jitter is not None and session._jitter.stats.pushed == 10)
        frames = [session.pull_frame() for _ in range(14)]
        audio = np.concatenate([f for f in frames if f is not None])
        assert all(f is not None and len(f) == 320 for f in frames)
        loud = audio[np.abs(audio) > 0]
        assert len(loud) > 2000 and band_energy(audio, 16000, 5000) > 0.8
        for n in range(3):
            session.send_audio(sine(5000, 320, 16000, 320 * n), True)
        packets = [parse_rtp(d) for d in await recv(peer, 3)]
        assert [p.payload_type for p in packets] == [9, 9, 9]
        assert [(p.timestamp - packets[0].timestamp) % 2**32 for p in packets] == [0, 160, 320]
        heard = np.concatenate([decoder.decode(p.payload) for p in packets])
        assert band_energy(heard[320:], 16000, 5000) > 0.8
        # A re-INVITE switches to PCMU: the call stays at 16 kHz, resampled at the codec.
        session.update(params(peer.getsockname()[1], pt=0))
        session.send_audio(sine(440, 320, 16000), True)
        (wire,) = await recv(peer, 1)
        assert session.sample_rate == 16000 and len(parse_rtp(wire).payload) == 160
    finally:
        session.close()
        peer.close()
