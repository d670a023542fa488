"""The edge's replay buffer keeps only caller audio that no final transcript covers yet, so a
new ASR owner after a takeover never transcribes words a second time (with or without the
policy service's stored record copies to tell it where to resume)."""

from __future__ import annotations

from phoneagent.edge.replay import AudioReplay
from phoneagent.v1 import common_pb2, media_pb2

T0 = 1_800_000_000_000_000_000
FRAME_NS = 20_000_000


def frame(seq: int) -> media_pb2.AudioFrame:
    return media_pb2.AudioFrame(
        meta=common_pb2.EventMeta(call_id="c1"), sequence=seq, capture_unix_ns=T0 + seq * FRAME_NS
    )


def test_a_final_drops_the_frames_it_covers_and_keeps_the_rest() -> None:
    replay = AudioReplay(bus=None, call_id="c1", keep_s=5.0)  # type: ignore[arg-type]
    for seq in range(100):
        replay.keep(frame(seq))
    replay.transcribed(T0 + 40 * FRAME_NS + 5_000_000)  # speech ended inside frame 40
    assert [f.sequence for f in replay.frames] == list(range(40, 100))
    replay.transcribed(T0)  # an older final changes nothing
    assert replay.frames[0].sequence == 40
    replay.transcribed(T0 + 200 * FRAME_NS)  # everything transcribed
    assert not replay.frames
    replay.keep(frame(200))
    assert [f.sequence for f in replay.frames] == [200]
