"""The start of a caller's turn reaches the decoder even when frames come faster than the
session handles them: a replica starved of CPU for a moment, or the edge's replay burst after a
takeover (up to 5 s of frames at once), must not push the first words out of the session's
queue (issue 16). The session counts the frames it saw and those missing in the sequence."""

from __future__ import annotations

import time

import numpy as np
import pytest
from phoneagent.asr import service as asr_service
from phoneagent.asr import stream
from phoneagent.asr.engines.base import TranscriptResult
from phoneagent.asr.settings import AsrSettings
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.settings import CommonSettings
from phoneagent.v1 import call_pb2, common_pb2, media_pb2, session_pb2
from support.common import wait_for

RATE = 16000
FRAME = 320
CALL = "asr-onset-burst"


class SlowDetector:
    """Energy VAD that costs 3 ms a window, like Silero on a loaded two-core machine."""

    window = 512

    def probability(self, window: np.ndarray) -> float:
        time.sleep(0.003)
        return 1.0 if float(np.sqrt(np.mean(window**2))) > 0.01 else 0.0

    def reset(self) -> None: ...


class LengthEngine:
    """Transcribes to the decoded audio's length in 20 ms frames."""

    name = "fake"
    sample_rate = RATE

    def transcribe(self, pcm: np.ndarray, *, partial: bool = False) -> TranscriptResult:
        return TranscriptResult(text=str(len(pcm) // FRAME), language="en")

    def busy(self) -> bool:
        return False


def frame(seq: int, pcm: np.ndarray) -> media_pb2.AudioFrame:
    return media_pb2.AudioFrame(
        meta=common_pb2.EventMeta(call_id=CALL),
        sequence=seq,
        pcm=pcm.astype("<i2").tobytes(),
        sample_rate=RATE,
        capture_unix_ns=1_700_000_000_000_000_000 + seq * 20_000_000,
    )


async def test_a_burst_of_caller_frames_loses_none_of_the_turn(
    fresh_nats: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "SileroVad", SlowDetector)
    svc = asr_service.AsrService(CommonSettings(), AsrSettings())
    svc.engine = LengthEngine()  # type: ignore[assignment]
    sender = Bus("edge-test")
    session = None
    finals: list[stream.Final] = []
    try:
        await svc.bus.connect(fresh_nats)
        await sender.connect(fresh_nats)
        await streams.ensure(sender.jetstream())
        claim = session_pb2.SessionClaim(call=call_pb2.CallStarted(meta=common_pb2.EventMeta(call_id=CALL)))
        session = asr_service.AsrCallSession(svc, claim)
        publish = session.publish

        async def keep(ev: stream.AsrEvent) -> None:
            if isinstance(ev, stream.Final):
                finals.append(ev)
            await publish(ev)

        session.publish = keep  # type: ignore[method-assign]
        await session.start()
        # 0.5 s of silence, a 3 s turn, 1 s of silence: 225 frames published at once.
        t = np.arange(RATE * 3) / RATE
        speech = (8000 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)
        audio = np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE, np.int16)])
        count = len(audio) // FRAME
        for k in range(count):
            await sender.publish(subjects.audio_in(CALL), frame(k, audio[k * FRAME : (k + 1) * FRAME]))
        await wait_for(lambda: session.frames + session.missing >= count, timeout=20, interval=0.05)
        await wait_for(lambda: bool(finals), timeout=10, interval=0.05)
        assert session.frames == count and session.missing == 0
        # The whole turn was decoded: 3 s of speech plus the pre-roll and the tail pad.
        assert int(finals[0].text) >= 150 + 15
        assert finals[0].onset_sample == pytest.approx(RATE // 2, abs=512)
        assert finals[0].start_sample <= finals[0].onset_sample - 0.3 * RATE
    finally:
        if session is not None:
            await session.close("test over")
        await sender.close()
        await svc.bus.close()
