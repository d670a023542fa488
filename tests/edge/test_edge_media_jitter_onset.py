"""The start of a talk spurt survives the jitter buffer: a consumer that stalls (the edge's
event loop busy for longer than the buffer holds) and the delay shedding that follows must
not cost the caller's first words (issue 16: "new patient spring." for "What should new
patients bring?")."""

import numpy as np
from phoneagent.audio.g711 import PCMU
from phoneagent.edge.media.jitter import Frame, JitterBuffer

FRAME = 160
TS0 = 7000


def tone(n: int) -> bytes:
    t = np.arange(FRAME) + n * FRAME
    return PCMU.encode((6000 * np.sin(2 * np.pi * 250 * t / 8000)).astype(np.int16))


QUIET = PCMU.encode(np.zeros(FRAME, np.int16))


def run(jb: JitterBuffer, count: int, speech_from: int, stalled: range) -> list[Frame]:
    """Packet n arrives at n x 20 ms (quiet before ``speech_from``, a tone after); the consumer
    pulls every 20 ms except during the ``stalled`` ticks (its event loop was busy)."""
    frames = []
    for k in range(count + 60):
        if k < count:
            jb.push(TS0 + k * FRAME, tone(k) if k >= speech_from else QUIET, k * 0.02)
        if k not in stalled:
            frames.append(jb.pull())
    return frames


def played(frames: list[Frame]) -> set[int]:
    return {(f.timestamp - TS0) // FRAME for f in frames if f.timestamp is not None}


def test_a_stall_longer_than_the_buffer_keeps_the_queued_speech() -> None:
    # 800 ms without a pull while the caller starts talking: the packets queued meanwhile reach
    # further ahead of the playout point than a new stream's jump would; they are a backlog.
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=300)
    frames = run(jb, 300, speech_from=110, stalled=range(100, 140))
    assert set(range(110, 160)) <= played(frames)  # the first second of speech, whole
    assert jb.stats.restarts == 0 and jb.stats.discarded == 0


def test_a_jump_while_frames_are_queued_plays_them_first() -> None:
    # The consumer stalled with the start of a talk spurt queued; the sender then resumes after
    # a pause (its timestamps jump 2 s): the queued frames still play, then the new ones.
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=300)
    for k in range(60):
        jb.push(TS0 + k * FRAME, QUIET if k < 40 else tone(k), k * 0.02)
        if k < 45:
            jb.pull()
    later = TS0 + 160 * FRAME
    for k in range(30):
        jb.push(later + k * FRAME, tone(k), 1.2 + k * 0.02)
    frames = [jb.pull() for _ in range(60)]
    stamps = [f.timestamp for f in frames if f.timestamp is not None]
    assert stamps[:16] == [TS0 + k * FRAME for k in range(44, 60)]
    assert stamps[16:] == [later + k * FRAME for k in range(30)]
    assert jb.stats.restarts == 1 and jb.stats.carried == 16 and jb.stats.discarded == 0


def test_delay_is_shed_in_quiet_frames_not_in_the_first_words() -> None:
    # A 400 ms stall just before the caller speaks leaves the buffer 20 frames too deep; the
    # excess goes in the quiet frames ahead and later in the talk spurt, never in its first second.
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=300)
    frames = run(jb, 400, speech_from=100, stalled=range(78, 98))
    assert set(range(100, 150)) <= played(frames)
    assert jb.stats.dropped_for_delay > 0  # the delay still comes down
    assert jb.depth <= jb.target_frames + 1
    assert jb.stats.deferred > 0


def test_a_sender_that_resets_its_timestamps_is_heard_from_its_first_packet() -> None:
    # Same SSRC, timestamps jump back by 400 000 (a media server switched sources mid-call) just
    # as the caller starts a sentence: its first packets are a new time line, not late ones.
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=300)
    for k in range(100):
        jb.push(TS0 + 400_000 + k * FRAME, QUIET, k * 0.02)
        jb.pull()
    frames = []
    for k in range(60):
        jb.push(TS0 + k * FRAME, tone(k), 2.0 + k * 0.02)
        frames.append(jb.pull())
    assert played(frames) >= set(range(0, 55))
    assert jb.stats.late == 0 and jb.stats.restarts == 1
