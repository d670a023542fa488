"""The WebRTC transport's audio plumbing, without a network: frame shapes, timestamps,
resampling both ways, bounded queues, and what a browser call cannot do."""

from __future__ import annotations

import asyncio
import fractions

import numpy as np
import pytest
from av import AudioFrame
from phoneagent.edge.webrtc.call import negotiated_codec
from phoneagent.edge.webrtc.call_transport import TRANSFER_REFUSED, AgentAudioTrack, WebRtcTransport


def tone(rate: int, ms: int, hz: float = 440.0, amp: int = 8000) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.int16)


async def test_agent_frames_are_20ms_48k_with_continuous_pts() -> None:
    tr = WebRtcTransport(16000)
    speech = tone(16000, 200)
    for i in range(0, len(speech), 320):
        await tr.send_agent_frame(speech[i : i + 320], True)
    frames = [await asyncio.wait_for(tr.track.recv(), 1) for _ in range(8)]
    assert all(f.samples == 960 and f.sample_rate == 48000 for f in frames)
    assert all(f.time_base == fractions.Fraction(1, 48000) for f in frames)
    assert [f.pts for f in frames] == [i * 960 for i in range(8)]
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames[2:]])
    assert np.abs(pcm).max() > 6000  # the tone survived 16 -> 48 kHz


async def test_agent_queue_is_bounded_and_drops_oldest() -> None:
    track = AgentAudioTrack(max_frames=3)
    for level in range(5):
        track.push(np.full(960, level, np.int16))
    assert track.queued == 3 and track.dropped == 2
    first = await track.recv()
    assert int(first.to_ndarray().reshape(-1)[0]) == 2
    with pytest.raises(ValueError):
        track.push(np.zeros(100, np.int16))


async def test_stopped_track_wakes_a_waiting_reader() -> None:
    from aiortc.mediastreams import MediaStreamError

    track = AgentAudioTrack()
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)


def _browser_frame(pcm: np.ndarray, rate: int, channels: int) -> AudioFrame:
    layout = "stereo" if channels == 2 else "mono"
    data = np.repeat(pcm, channels) if channels == 2 else pcm
    frame = AudioFrame(format="s16", layout=layout, samples=len(pcm))
    frame.planes[0].update(data.astype("<i2").tobytes())
    frame.sample_rate = rate
    return frame


async def test_caller_audio_is_mixed_resampled_and_framed() -> None:
    tr = WebRtcTransport(16000, caller_buffer_ms=200)
    assert tr.pull_caller_frame() is None
    opus_like = tone(48000, 300)
    for i in range(0, len(opus_like), 960):
        tr.feed_caller(_browser_frame(opus_like[i : i + 960], 48000, 2))
    frames = []
    while (f := tr.pull_caller_frame()) is not None:
        frames.append(f)
    assert len(frames) == 10  # 300 ms arrived, the buffer keeps the newest 200 ms
    assert all(len(f) == 320 and f.dtype == np.int16 for f in frames)
    assert np.abs(np.concatenate(frames)).max() > 6000
    pcmu_like = tone(8000, 40)
    tr.feed_caller(_browser_frame(pcmu_like[:160], 8000, 1))
    tr.feed_caller(_browser_frame(pcmu_like[160:], 8000, 1))
    assert tr.pull_caller_frame() is not None


async def test_transfer_refused_and_hangup_closes_the_peer() -> None:
    closed = asyncio.Event()

    async def close_peer() -> None:
        closed.set()

    tr = WebRtcTransport(8000, close_peer=close_peer)
    assert await tr.transfer("sip:desk@example.com", True, "") == (False, TRANSFER_REFUSED)
    await tr.hangup("agent")
    assert closed.is_set() and tr.track.readyState == "ended"
    await tr.send_agent_frame(np.zeros(160, np.int16), True)  # after hang-up: ignored, no error


def test_negotiated_codec_reads_the_answer() -> None:
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 111\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    assert negotiated_codec(sdp) == "PCMU"
    assert negotiated_codec("v=0\r\n") == ""
