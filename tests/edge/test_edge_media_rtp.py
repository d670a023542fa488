import os
import random

import numpy as np
import pytest
from phoneagent.edge.media.rtp import (
    RtpError,
    RtpExtension,
    RtpPacket,
    Unwrapper,
    build_rtp,
    parse_rtp,
    seq_add,
    seq_delta,
    ts_add,
    ts_delta,
)
from phoneagent.edge.media.rtp_stream import RtpStreamState, TokenBucket
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.sip.sdp import MediaParams

PEER = ("127.0.0.1", 40000)


def pkt(seq: int = 1, ts: int = 160, **kw) -> RtpPacket:
    return RtpPacket(
        payload_type=kw.pop("pt", 0),
        sequence=seq,
        timestamp=ts,
        ssrc=kw.pop("ssrc", 0x1234),
        payload=kw.pop("payload", b"\xff" * 160),
        **kw,
    )


def test_minimal_packet_layout() -> None:
    data = build_rtp(pkt(seq=0xABCD, ts=0x01020304, marker=True, payload=b"xy"))
    assert data == bytes([0x80, 0x80, 0xAB, 0xCD, 1, 2, 3, 4, 0, 0, 0x12, 0x34]) + b"xy"


def test_round_trip_with_csrc_extension_padding_and_marker() -> None:
    original = pkt(
        seq=65535,
        ts=0xFFFFFFFF,
        marker=True,
        pt=101,
        csrcs=(1, 0xFFFFFFFF),
        extension=RtpExtension(0xBEDE, b"\x10\xaa\x00\x00"),
        padding=4,
        payload=b"abc",
    )
    data = original.to_bytes()
    assert data[0] & 0x3F == 0x30 | 2  # padding, extension, 2 CSRCs
    assert data[-1] == 4
    parsed = parse_rtp(data)
    assert parsed == original and parsed.padding == 4
    assert parsed.payload == b"abc"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x80\x00\x00", "truncated"),
        (bytes([0x40, 0]) + bytes(10), "version"),
        (bytes([0x80, 0xC8]) + bytes(10), "rtcp"),  # RTCP sender report on a muxed port
        (bytes([0x8F, 0]) + bytes(10), "truncated"),  # 15 CSRCs announced, none present
        (bytes([0x90, 0]) + bytes(10) + b"\x00\x01", "truncated"),  # extension header cut
        (bytes([0x90, 0]) + bytes(10) + b"\x00\x01\x00\x05", "truncated"),  # extension longer than packet
        (bytes([0xA0, 0]) + bytes(10) + b"\x00", "padding"),  # zero padding count
        (bytes([0xA0, 0]) + bytes(10) + b"\x20", "truncated"),  # padding longer than packet
    ],
)
def test_malformed_packets_raise_rtp_error(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError) as info:
        parse_rtp(data)
    assert info.value.reason == reason


def test_random_garbage_never_raises_anything_but_rtp_error() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.5 and data:
            data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]
        try:
            p = parse_rtp(data)
        except RtpError:
            continue
        assert len(p.payload) <= len(data)


def test_build_rejects_out_of_range_fields() -> None:
    for bad in (
        pkt(seq=65536),
        pkt(ts=-1),
        pkt(pt=128),
        pkt(csrcs=tuple(range(16))),
        pkt(extension=RtpExtension(1, b"abc")),
        pkt(padding=256),
    ):
        with pytest.raises(RtpError):
            build_rtp(bad)


def test_wraparound_arithmetic() -> None:
    assert seq_delta(0, 65535) == 1 and seq_delta(65535, 0) == -1 and seq_delta(5, 5) == 0
    assert seq_add(65535, 2) == 1
    assert ts_delta(10, 0xFFFFFFF0) == 26 and ts_delta(0xFFFFFFF0, 10) == -26
    assert ts_add(0xFFFFFF00, 0x200) == 0x100


def test_unwrapper_extends_across_wrap_with_reordering() -> None:
    u = Unwrapper(16)
    seqs = [65533, 65534, 0, 65535, 1, 2]
    assert [u.unwrap(s) for s in seqs] == [65533, 65534, 65536, 65535, 65537, 65538]


def test_stream_latches_first_source_and_rejects_others() -> None:
    st = RtpStreamState(payload_types={0, 101})
    assert st.receive(pkt().to_bytes(), PEER, 0.0) is not None
    assert st.source == PEER and st.ssrc == 0x1234
    assert st.receive(pkt(seq=2).to_bytes(), ("127.0.0.1", 40002), 0.02) is None
    assert st.receive(pkt(seq=3, pt=8).to_bytes(), PEER, 0.04) is None
    assert st.receive(b"\x00garbage-and-more", PEER, 0.06) is None
    assert st.drops == {"source": 1, "payload_type": 1, "version": 1}
    assert st.accepted == 1


def test_stream_without_latching_accepts_only_the_sdp_address() -> None:
    st = RtpStreamState(expected=PEER, latch=False)
    assert st.receive(pkt().to_bytes(), ("127.0.0.1", 1), 0.0) is None
    assert st.receive(pkt().to_bytes(), PEER, 0.0) is not None


def test_stream_reports_ssrc_change_from_latched_source() -> None:
    st = RtpStreamState()
    first = st.receive(pkt().to_bytes(), PEER, 0.0)
    same = st.receive(pkt(seq=2).to_bytes(), PEER, 0.02)
    changed = st.receive(pkt(seq=900, ssrc=99).to_bytes(), PEER, 0.04)
    assert first and first.new_ssrc and same and not same.new_ssrc and changed and changed.new_ssrc
    assert st.ssrc == 99


def test_flood_is_rate_limited_and_counted() -> None:
    st = RtpStreamState(rate_pps=100, burst=20)
    data = pkt().to_bytes()
    # 10,000 packets within one second from the latched peer.
    accepted = sum(st.receive(data, PEER, i / 10000) is not None for i in range(10000))
    assert 100 <= accepted <= 125
    assert st.drops["rate"] == 10000 - accepted
    # A normal 50 packets/s stream afterwards is untouched.
    later = [st.receive(data, PEER, 2.0 + i * 0.02) for i in range(100)]
    assert all(r is not None for r in later)


def test_token_bucket_refills_at_rate() -> None:
    b = TokenBucket(rate=10, burst=2)
    assert [b.take(0.0) for _ in range(3)] == [True, True, False]
    assert b.take(0.05) is False and b.take(0.1) is True


def test_random_datagrams_never_crash_the_stream() -> None:
    st = RtpStreamState(rate_pps=1e9, burst=10**9)
    for i in range(2000):
        st.receive(os.urandom(i % 50), PEER, i * 0.001)
    assert st.accepted + st.dropped == 2000


async def test_rtp_inactivity_clock_counts_silence_and_stops_while_the_peer_holds() -> None:
    session = await RtpSession.open("127.0.0.1", 44000, 44999)
    try:
        assert session.silent_for() is None  # nothing negotiated yet
        params = MediaParams("127.0.0.1", 44998, 0, "PCMU", 8000, None, 20, "sendrecv")
        session.start(params)
        start = session.last_received
        assert session.silent_for(start + 7.5) == pytest.approx(7.5)
        session.last_received -= 10
        packet = RtpPacket(0, 1, 160, 1234, b"\xff" * 160).to_bytes()
        session.on_datagram(packet, ("127.0.0.1", 44998))
        assert (session.silent_for() or 99.0) < 1.0  # a packet restarts the clock
        session.last_received -= 10
        session.on_datagram(packet[:5], ("127.0.0.1", 44998))  # garbage does not count as life
        session.on_datagram(RtpPacket(0, 2, 320, 1234, b"\xff" * 160).to_bytes(), ("10.9.9.9", 5000))
        assert (session.silent_for() or 0.0) > 9.0  # nor does RTP from a stranger
        for direction in ("recvonly", "inactive", "sendonly"):  # on hold: the peer may send nothing
            session.update(MediaParams("127.0.0.1", 44998, 0, "PCMU", 8000, None, 20, direction))
            assert session.silent_for() is None
        session.update(params)
        assert session.silent_for() is not None and session.silent_for() < 1.0  # back: counted afresh
    finally:
        session.close()


async def test_opus_session_takes_packets_on_either_sides_payload_type() -> None:
    from phoneagent.audio.opus import OpusCodec

    session = await RtpSession.open("127.0.0.1", 44000, 44999)
    try:
        # we offered Opus as 111, the peer answered it as 120: we send 120, it sends 111
        session.start(MediaParams("127.0.0.1", 44998, 120, "OPUS", 48000, None, 20, "sendrecv", None, 111))
        assert session.sample_rate == 16000 and session.codec is not None and session.codec.name == "OPUS"
        peer = OpusCodec()
        for n, pt in enumerate((111, 111, 120, 96)):
            payload = peer.encode(np.zeros(320, np.int16))
            session.on_datagram(RtpPacket(pt, n, 960 * n, 77, payload).to_bytes(), ("127.0.0.1", 44998))
        assert session.jitter_stats is not None and session.jitter_stats.pushed == 3  # not 96
        assert session.drops == 1
    finally:
        session.close()
