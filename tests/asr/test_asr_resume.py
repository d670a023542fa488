"""FrameGate: a taken-over ASR session holds live frames until the edge's replay fills the
gap, skips what the old owner already transcribed, and never processes a frame twice."""

from __future__ import annotations

from phoneagent.asr.resume import FrameGate
from phoneagent.v1 import media_pb2

SPEECH_END_NS = 1_000_000_000_000


def frame(seq: int) -> media_pb2.AudioFrame:
    # Frame n was captured n * 20 ms after frame 0.
    return media_pb2.AudioFrame(
        sequence=seq, pcm=b"\0\0" * 320, capture_unix_ns=SPEECH_END_NS + (seq - 50) * 20_000_000
    )


def seqs(frames: list[media_pb2.AudioFrame]) -> list[int]:
    return [f.sequence for f in frames]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_fresh_session_passes_frames_through_and_drops_repeats() -> None:
    gate = FrameGate(resuming=False)
    assert seqs(gate.push(frame(0))) == [0]
    assert seqs(gate.push(frame(1))) == [1]
    assert gate.push(frame(1)) == [] and gate.push(frame(0)) == []
    assert seqs(gate.push(frame(2))) == [2]
    assert gate.dropped == 2


def test_a_resumed_session_processes_the_replayed_gap_then_live_frames_in_order_once() -> None:
    # The old owner's last final ended at frame 50; the new owner starts hearing at frame 120;
    # the edge replays frames 20..124 (its ring buffer) once the new owner is in a heartbeat.
    gate = FrameGate(resuming=True, wait_s=10, skip_before_ns=SPEECH_END_NS)
    out: list[int] = []
    for seq in range(120, 125):
        out += seqs(gate.push(frame(seq)))
    assert out == [] and gate.holding
    for seq in range(20, 125):
        out += seqs(gate.push(frame(seq)))
        if seq in (80, 122):  # live frames interleave with the replay
            out += seqs(gate.push(frame(125 + (seq == 122))))
    for seq in range(127, 130):
        out += seqs(gate.push(frame(seq)))
    assert not gate.holding
    assert out == list(range(50, 130)), out  # nothing before the last final, no gap, no repeat
    assert gate.skipped == 30


def test_a_resumed_session_without_a_replay_goes_on_after_the_wait() -> None:
    clock = Clock()
    gate = FrameGate(resuming=True, wait_s=1.0, clock=clock)
    assert gate.push(frame(300)) == [] and gate.push(frame(301)) == []
    clock.t = 1.0
    assert seqs(gate.push(frame(302))) == [300, 301, 302]
    assert seqs(gate.push(frame(303))) == [303]
    assert gate.push(frame(299)) == []  # a late replay is dropped: those frames are past


def test_a_resumed_session_holds_a_bounded_number_of_frames() -> None:
    gate = FrameGate(resuming=True, wait_s=60, max_held=10)
    out: list[int] = []
    for seq in range(500, 510):
        out += seqs(gate.push(frame(seq)))
    assert out == list(range(500, 510)) and not gate.holding


def test_a_stray_frame_with_a_huge_sequence_number_does_not_silence_the_call() -> None:
    gate = FrameGate(resuming=False)
    assert seqs(gate.push(frame(10))) == [10]
    stray = media_pb2.AudioFrame(sequence=2**63, pcm=b"\0")  # garbage: the audio check rejects it later
    assert seqs(gate.push(stray)) == [2**63]
    assert seqs(gate.push(frame(11))) == [11]
    assert gate.push(frame(10)) == []  # still a repeat


def test_repeats_are_remembered_for_a_bounded_number_of_frames() -> None:
    gate = FrameGate(resuming=False)
    for seq in range(5000):
        assert seqs(gate.push(frame(seq))) == [seq]
    assert gate.push(frame(4999 - 500)) == []  # a replay of the last seconds is dropped
    assert len(gate._seen) <= 1000
