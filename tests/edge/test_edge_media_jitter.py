import random
from dataclasses import dataclass

import numpy as np
from phoneagent.audio.g711 import PCMU
from phoneagent.edge.media.jitter import Frame, JitterBuffer, PushResult

FRAME = 160


def payload_for(n: int) -> bytes:
    """A distinct, non-silent 20 ms frame for packet n (a short tone whose phase depends on n)."""
    t = np.arange(FRAME) + n * FRAME
    return PCMU.encode((8000 * np.sin(2 * np.pi * 300 * t / 8000)).astype(np.int16))


@dataclass
class Sent:
    arrival: float
    ts: int
    payload: bytes


def stream(count: int, ts0: int = 1000, delay=lambda n: 0.0, start: float = 0.0) -> list[Sent]:
    """Packets sent every 20 ms; ``delay(n)`` is the network delay of packet n (None: lost)."""
    out = []
    for n in range(count):
        d = delay(n)
        if d is None:
            continue
        out.append(Sent(start + n * 0.02 + d, (ts0 + n * FRAME) & 0xFFFFFFFF, payload_for(n)))
    out.sort(key=lambda s: s.arrival)
    return out


def run(jb: JitterBuffer, packets: list[Sent], pulls: int, phase: float = 0.01) -> list[Frame]:
    """Deliver packets by arrival time and pull once every 20 ms; returns the pulled frames."""
    frames = []
    i = 0
    for k in range(pulls):
        now = k * 0.02 + phase
        while i < len(packets) and packets[i].arrival <= now:
            jb.push(packets[i].ts, packets[i].payload, packets[i].arrival)
            i += 1
        frames.append(jb.pull())
    return frames


def played_indices(frames: list[Frame], ts0: int = 1000) -> list[int]:
    return [((f.timestamp - ts0) & 0xFFFFFFFF) // FRAME for f in frames if f.timestamp is not None]


def check_content(frames: list[Frame], ts0: int = 1000) -> None:
    for f in frames:
        assert f.pcm.shape == (FRAME,) and f.pcm.dtype == np.int16
        if f.timestamp is not None:
            n = ((f.timestamp - ts0) & 0xFFFFFFFF) // FRAME
            np.testing.assert_array_equal(f.pcm, PCMU.decode(payload_for(n)))


def first_audio(frames: list[Frame]) -> int:
    return next(i for i, f in enumerate(frames) if f.timestamp is not None)


def test_steady_stream_plays_every_frame_in_order_at_min_delay() -> None:
    jb = JitterBuffer(min_delay_ms=40)
    frames = run(jb, stream(200), 205)
    check_content(frames)
    start = first_audio(frames)
    assert start == 1  # two frames (40 ms) buffered when playout starts
    assert played_indices(frames) == list(range(200))
    assert not any(f.concealed for f in frames[start : start + 200])
    assert jb.stats.concealed == 205 - 1 - 200  # pulls after the stream ended


def test_reordered_packets_are_put_back_in_order() -> None:
    # Every other pair swapped: packet 2k+1 arrives 5 ms before packet 2k.
    jb = JitterBuffer(min_delay_ms=40)
    frames = run(jb, stream(300, delay=lambda n: 0.025 if n % 2 == 0 else 0.0), 310)
    check_content(frames)
    assert played_indices(frames) == list(range(300))
    assert jb.stats.late == 0


def test_duplicates_are_dropped() -> None:
    packets = stream(100)
    doubled = sorted(
        packets + [Sent(p.arrival + 0.001, p.ts, p.payload) for p in packets], key=lambda s: s.arrival
    )
    jb = JitterBuffer()
    frames = run(jb, doubled, 105)
    assert played_indices(frames) == list(range(100))
    assert jb.stats.duplicate == 100


def test_lost_packets_are_concealed_with_fading_repeat_then_silence() -> None:
    lost = {50, 80, 81, 82, 83, 84, 85}
    jb = JitterBuffer(min_delay_ms=40, fade_frames=3)
    frames = run(jb, stream(200, delay=lambda n: None if n in lost else 0.0), 200)
    check_content(frames)
    played = played_indices(frames)
    assert played == [n for n in range(199) if n not in lost]
    start = first_audio(frames)
    by_index = {n: frames[start + n] for n in range(198)}
    assert all(by_index[n].concealed for n in lost)
    # First concealed frame: the previous frame, faded (never louder, not silent); later: silence.
    prev = PCMU.decode(payload_for(49)).astype(np.int32)
    c = by_index[50].pcm.astype(np.int32)
    assert np.all(np.abs(c) <= np.abs(prev)) and np.abs(c).max() > 0
    assert np.abs(by_index[82].pcm).max() < np.abs(by_index[80].pcm).max()
    assert np.abs(by_index[83].pcm).max() == 0 and np.abs(by_index[85].pcm).max() == 0


def test_target_delay_adapts_to_measured_jitter() -> None:
    rng = random.Random(11)
    calm = JitterBuffer(min_delay_ms=40, max_delay_ms=300)
    run(calm, stream(500, delay=lambda n: rng.uniform(0, 0.002)), 505)
    assert calm.target_delay_ms == 40

    rng = random.Random(12)
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=300)
    frames = run(jb, stream(1500, delay=lambda n: rng.uniform(0, 0.08)), 1510)
    check_content(frames)
    # RFC 3550 J of uniform(0, 80 ms) delay is about 27 ms; target = 20 + 3 J.
    assert 18 < jb.jitter_ms < 35
    assert 80 < jb.target_delay_ms <= 300
    # After adapting (first 10 s), almost nothing arrives too late.
    late_after = sum(1 for f in frames[500:1400] if f.concealed)
    assert late_after <= 9  # under 1 %
    assert jb.stats.late < 60


def test_target_delay_never_exceeds_max() -> None:
    rng = random.Random(2)
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=200)
    frames = run(jb, stream(500, delay=lambda n: rng.uniform(0, 1.0)), 560)
    assert jb.target_delay_ms == 200
    assert len(jb._frames) <= jb.capacity
    check_content(frames)


def test_delay_shrinks_when_jitter_subsides() -> None:
    rng = random.Random(5)
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=300)
    packets = stream(1500, delay=lambda n: rng.uniform(0, 0.1) if n < 500 else 0.0)
    frames = run(jb, packets, 1505)
    assert jb.stats.dropped_for_delay > 0
    assert jb.target_delay_ms < 60
    assert jb.depth <= jb.target_frames + 1
    assert played_indices(frames)[-1] == 1499


def test_sequence_and_timestamp_wraparound() -> None:
    ts0 = 0xFFFFFFFF - 20 * FRAME + 1
    jb = JitterBuffer()
    frames = run(jb, stream(100, ts0=ts0, delay=lambda n: 0.03 if n % 3 == 0 else 0.0), 105)
    check_content(frames, ts0=ts0)
    assert played_indices(frames, ts0=ts0) == list(range(100))


def test_too_late_packet_is_dropped_and_counted() -> None:
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=100)
    packets = stream(100, delay=lambda n: 0.5 if n == 40 else 0.0)
    frames = run(jb, packets, 105)
    assert jb.stats.late == 1
    assert 40 not in played_indices(frames)


def test_pause_in_stream_does_not_add_delay() -> None:
    # 300 ms without packets (silence suppression), then the stream resumes.
    jb = JitterBuffer(min_delay_ms=40)
    packets = stream(300, delay=lambda n: None if 100 <= n < 115 else 0.0)
    frames = run(jb, packets, 305)
    start = first_audio(frames)
    resumed = next(i for i, f in enumerate(frames) if f.timestamp == 1000 + 115 * FRAME)
    assert resumed - start == 115  # played at the same point in time as without the pause
    assert played_indices(frames) == [n for n in range(300) if not 100 <= n < 115]


def test_long_pause_restarts_buffer() -> None:
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=100)
    frames = run(jb, stream(400, delay=lambda n: None if 100 <= n < 300 else 0.0), 410)
    assert jb.stats.restarts == 1
    assert played_indices(frames) == [n for n in range(400) if not 100 <= n < 300]


def test_sender_timestamp_reset_recovers() -> None:
    jb = JitterBuffer()
    first = stream(100, ts0=500_000)
    second = stream(100, ts0=1000, start=2.0)  # same SSRC, timestamps jump back by ~490k
    frames = run(jb, first + second, 210)
    assert jb.stats.restarts == 1
    assert len(played_indices(frames)) >= 185


def test_malformed_payload_and_bounded_memory() -> None:
    jb = JitterBuffer(max_delay_ms=200)
    assert jb.push(0, b"\xff" * 100, 0.0) is PushResult.MALFORMED
    assert jb.push(0, b"", 0.0) is PushResult.MALFORMED
    for n in range(5000):  # nobody pulls
        jb.push(n * FRAME, payload_for(n), n * 0.02)
    assert len(jb._frames) <= jb.capacity
    # A 40 ms packet fills two frames.
    jb2 = JitterBuffer()
    assert jb2.push(0, payload_for(0) + payload_for(1), 0.0) is PushResult.ACCEPTED
    assert [f.timestamp for f in (jb2.pull(), jb2.pull())] == [0, FRAME]


def test_silence_before_first_packet_is_not_concealment() -> None:
    jb = JitterBuffer()
    f = jb.pull()
    assert not f.concealed and f.timestamp is None and not f.pcm.any()


def test_opus_packets_are_whole_frames_on_the_48_khz_clock() -> None:
    from phoneagent.audio.opus import OpusCodec

    enc = OpusCodec()
    t = np.arange(320 * 60) / 16000
    tone = (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    packets = [enc.encode(tone[i * 320 : (i + 1) * 320]) for i in range(60)]
    jb = JitterBuffer(OpusCodec(), min_delay_ms=40)
    assert (jb.frame_samples, jb.pcm_samples) == (960, 320)
    order = list(range(60))
    order[10], order[11] = order[11], order[10]  # reordered on the way
    frames = []
    for k, n in enumerate(order):  # one packet in, one frame out, every 20 ms
        assert jb.push(5000 + n * 960, packets[n], k * 0.02) == PushResult.ACCEPTED
        frames.append(jb.pull())
    assert jb.push(5000 + 59 * 960, packets[59], 1.2) == PushResult.DUPLICATE
    frames += [jb.pull() for _ in range(3)]
    played = [f for f in frames if f.timestamp is not None]
    assert [(f.timestamp - 5000) // 960 for f in played] == list(range(len(played)))
    assert len(played) >= 55 and all(len(f.pcm) == 320 for f in frames)
    audio = np.concatenate([f.pcm for f in played[5:]]).astype(np.float64)
    spec = np.abs(np.fft.rfft(audio)) ** 2
    bins = np.fft.rfftfreq(len(audio), 1 / 16000)
    assert spec[np.abs(bins - 440) < 50].sum() / spec.sum() > 0.8
    # a 40 ms packet cannot be cut into frames: refused (our SDP asks for ptime 20)
    double = bytes([packets[0][0] | 1]) + packets[0][1:]  # the same TOC, code 1: two frames
    assert jb.push(5000 + 70 * 960, double, 3.0) == PushResult.MALFORMED
