"""The start of a caller's turn reaches the decoder even when frames come faster than the
session handles them: a replica starved of CPU for a moment, or the edge's replay burst after a
takeover (up to 5 s of frames at once), must not push the first words out of the session's
queue (issue 16). The session counts the frames it saw and those missing in the sequence.
Frames that run late in the middle of a turn are not silence: none is filled in for them, or the
caller's words would be cut apart; a line that really goes quiet still gets its turn ended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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


@asynccontextmanager
async def asr_session(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[asr_service.AsrCallSession, Bus, list[stream.Final]]]:
    """An ASR call session on a length engine, the bus that plays the edge, and its finals."""
    monkeypatch.setattr(stream, "SileroVad", SlowDetector)
    svc = asr_service.AsrService(CommonSettings(), AsrSettings())
    svc.engine = LengthEngine()  # type: ignore[assignment]
    sender = Bus("edge-test")
    session = None
    finals: list[stream.Final] = []
    try:
        await svc.bus.connect(nats_url)
        await sender.connect(nats_url)
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
        yield session, sender, finals
    finally:
        if session is not None:
            await session.close("test over")
        await sender.close()
        await svc.bus.close()


def tone(seconds: float) -> np.ndarray:
    t = np.arange(round(RATE * seconds)) / RATE
    return (8000 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)


async def test_a_burst_of_caller_frames_loses_none_of_the_turn(
    fresh_nats: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with asr_session(fresh_nats, monkeypatch) as (session, sender, finals):
        # 0.5 s of silence, a 3 s turn, 1 s of silence: 225 frames published at once.
        audio = np.concatenate([np.zeros(RATE // 2, np.int16), tone(3.0), np.zeros(RATE, np.int16)])
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


async def paced(sender: Bus, audio: np.ndarray, *, stall_at_s: float = -1.0, stall_s: float = 0.0) -> int:
    """Publish ``audio`` as 20 ms frames in real time; at ``stall_at_s`` the frames stop for
    ``stall_s`` and then the held-back ones go at once (a stalled edge or bus). Returns the count."""
    count = len(audio) // FRAME
    t0 = time.perf_counter()
    delay = 0.0
    for k in range(count):
        if stall_at_s >= 0 and k == round(stall_at_s / 0.02):
            delay = stall_s
        await asyncio.sleep(max(0.0, t0 + k * 0.02 + delay - time.perf_counter()))
        await sender.publish(subjects.audio_in(CALL), frame(k, audio[k * FRAME : (k + 1) * FRAME]))
    return count


async def test_frames_late_in_the_middle_of_a_turn_get_no_silence_filled_in(
    fresh_nats: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0.25 s stall in the middle of the caller's speech: one final over exactly the audio that
    a call without the stall decodes, nothing filled in (a 0.1 s fill wait added ~10 frames)."""
    audio = np.concatenate([np.zeros(RATE // 4, np.int16), tone(1.2), np.zeros(RATE, np.int16)])
    decoded: list[str] = []
    for stall_s in (0.0, 0.25):
        async with asr_session(fresh_nats, monkeypatch) as (session, sender, finals):
            count = await paced(sender, audio, stall_at_s=0.8, stall_s=stall_s)
            # every frame handled (a loaded machine lags), then a second final would have come
            await wait_for(lambda s=session, n=count: s.frames >= n, timeout=20, interval=0.05)
            await wait_for(lambda f=finals: bool(f), timeout=20, interval=0.05)
            await asyncio.sleep(0.3)
            assert len(finals) == 1 and session.frames == count, [f.text for f in finals]
            assert session.filled_s == 0.0 and session.late_after_fill == 0
            decoded.append(finals[0].text)
    assert decoded[1] == decoded[0]


async def test_a_line_that_goes_quiet_in_the_middle_of_a_turn_still_ends_it(
    fresh_nats: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silence suppression: no frame comes after the caller's last words, yet the turn ends."""
    async with asr_session(fresh_nats, monkeypatch) as (session, sender, finals):
        audio = np.concatenate([np.zeros(RATE // 4, np.int16), tone(1.0)])
        count = await paced(sender, audio)
        await wait_for(lambda: bool(finals), timeout=10, interval=0.05)
        await wait_for(lambda: session.frames >= count, timeout=10, interval=0.05)
        assert session.frames == count
        assert session.filled_s > 0
        assert int(finals[0].text) >= round(1.0 / 0.02)
