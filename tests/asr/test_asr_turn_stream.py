"""Turn-taking in AsrSession with the real Silero VAD, Whisper tiny.en and Smart Turn: a pause in
the middle of a phrase gives no final before the caller finishes, and what came before the pause
is not decoded again for the final; a finished question gives a
preflight and then the final (same turn, same text, no second decode); speech after a preflight
makes the turn's final carry all of it; a partial never queues ahead of another call's final."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from phoneagent.asr.engines.base import TranscriptResult
from phoneagent.asr.segmenter import SegmenterConfig
from phoneagent.asr.stream import AsrSession, Final, Partial, Preflight, SpeechStarted, TurnDecider
from phoneagent.asr.turn import TurnConfig

RATE = 16000
FRAME = 320


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def trim(x: np.ndarray) -> np.ndarray:
    """Without espeak's leading and trailing silence, so a pause is as long as the test says."""
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0] : loud[-1] + 1]


@pytest.fixture(scope="module")
def smart_turn() -> Iterator[object]:
    from phoneagent.asr.turn_model import SmartTurn

    model = SmartTurn()
    model.load()
    yield model


async def feed_timed(session: AsrSession, audio: np.ndarray) -> list[tuple[float, object]]:
    """Feed 20 ms frames; decodes and decisions finish before the next frame (as on an idle
    machine). Every event with the stream time of the frame that produced it."""
    events: list[tuple[float, object]] = []
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        t = i / RATE
        events += [(t, e) for e in await session.feed(audio[i : i + FRAME], t)]
        if session.pending:
            async with asyncio.timeout(60):
                events += [(t, e) for e in await session.drain()]
    async with asyncio.timeout(60):
        events += [(len(audio) / RATE, e) for e in await session.flush(len(audio) / RATE)]
    return events


@pytest.mark.slow
@pytest.mark.parametrize("telephone", [False, True], ids=["16k", "g711"])
async def test_a_pause_mid_phrase_gives_no_final_before_the_caller_finishes(
    speak, phone_line, tiny_engine, smart_turn, telephone: bool
) -> None:  # type: ignore[no-untyped-def]
    first, second = trim(speak("My phone number is")), trim(speak("five five five, one two three four."))
    audio = np.concatenate([silence(0.5), first, silence(0.7), second, silence(1.6)])
    if telephone:
        audio = phone_line(audio)
    resumed_at = (0.5 * RATE + len(first)) / RATE + 0.7
    session = AsrSession(tiny_engine, turn=TurnDecider(smart_turn))
    events = await feed_timed(session, audio)
    finals = [(t, e) for t, e in events if isinstance(e, Final)]
    assert len(finals) == 1, events
    t, final = finals[0]
    assert t > resumed_at and final.turn == 1
    text = final.text.lower()
    assert any(ch.isdigit() for ch in text) or "five" in text, text  # the digits are in the one final
    assert not any(isinstance(e, Preflight) for _, e in events if _ < resumed_at)
    # what was said before the pause was decoded once, at the pause: the final decoded only the rest
    assert session.stats.prefixes >= 1 and final.result is not None
    assert final.result.audio_s <= 0.7 + len(second) / RATE + 0.3, final.result.audio_s


@pytest.mark.slow
@pytest.mark.parametrize("telephone", [False, True], ids=["16k", "g711"])
async def test_a_finished_question_gives_a_preflight_then_its_final(
    speak, phone_line, tiny_engine, smart_turn, telephone: bool
) -> None:  # type: ignore[no-untyped-def]
    speech = speak("What time do you close today?")
    audio = np.concatenate([silence(0.5), speech, silence(1.5)])
    if telephone:
        audio = phone_line(audio)
    session = AsrSession(tiny_engine, turn=TurnDecider(smart_turn))
    events = await feed_timed(session, audio)
    kinds = [type(e) for _, e in events if not isinstance(e, Partial)]
    assert kinds == [SpeechStarted, Preflight, Final], events
    (t_pre, pre), (t_fin, fin) = [(t, e) for t, e in events if isinstance(e, Preflight | Final)]
    assert pre.turn == fin.turn == 1 and pre.text == fin.text and "today" in fin.text.lower()
    assert t_pre < t_fin
    assert fin.speech_end - fin.speech_start > 1.0
    # decided ~200 ms after the end of speech, not after a fixed 500 ms, and no second decode
    assert fin.endpoint - fin.speech_end == pytest.approx(0.2, abs=0.07)
    assert session.stats.finals_reused == 1 and session.stats.preflights == 1


class _Sure:
    def score(self, pcm: np.ndarray) -> float:
        return 0.9


@pytest.mark.slow
async def test_speech_after_a_preflight_goes_into_the_same_turns_final(speak, tiny_engine) -> None:  # type: ignore[no-untyped-def]
    first, second = trim(speak("I need an appointment.")), trim(speak("On Tuesday morning."))
    audio = np.concatenate([silence(0.5), first, silence(0.35), second, silence(1.5)])
    decider = TurnDecider(_Sure(), TurnConfig(min_wait_ms=700, max_wait_ms=1200))
    session = AsrSession(tiny_engine, turn=decider)
    events = [e for _, e in await feed_timed(session, audio) if not isinstance(e, Partial)]
    kinds = [type(e) for e in events]
    assert kinds[:2] == [SpeechStarted, Preflight] and kinds[-1] is Final, events
    assert kinds.count(Final) == 1 and kinds.count(SpeechStarted) == 1
    pre, fin = events[1], events[-1]
    assert pre.turn == fin.turn == 1  # type: ignore[union-attr]
    assert "appointment" in pre.text.lower() and "tuesday" not in pre.text.lower()  # type: ignore[union-attr]
    assert "tuesday" in fin.text.lower()  # type: ignore[union-attr]
    assert session.stats.preflights_superseded >= 1


class _HeldEngine:
    """One worker: a decode holds the engine until released; records what was decoded."""

    name = "held"
    sample_rate = RATE

    def __init__(self) -> None:
        self.release = threading.Event()
        self.decoding = threading.Event()
        self.started: list[bool] = []  # partial flag of each decode, in start order
        self._busy = 0
        self._lock = threading.Lock()

    def load(self) -> None: ...

    def close(self) -> None: ...

    def busy(self) -> bool:
        with self._lock:
            return self._busy > 0

    def transcribe(self, pcm: np.ndarray, *, partial: bool = False) -> TranscriptResult:
        with self._lock:
            self._busy += 1
            self.started.append(partial)
        self.decoding.set()
        try:
            self.release.wait(30)
            audio_s = len(pcm) / RATE
            return TranscriptResult(text="hello there", language="en", audio_s=audio_s, compute_s=0.01)
        finally:
            with self._lock:
                self._busy -= 1


class _Loud:
    window = 512

    def probability(self, window: np.ndarray) -> float:
        return 1.0 if float(np.abs(window).max()) > 0.05 else 0.0

    def reset(self) -> None: ...


async def test_a_partial_never_queues_ahead_of_another_calls_final() -> None:
    engine = _HeldEngine()
    cfg = SegmenterConfig(min_silence_ms=300, partial_interval_ms=300)
    a = AsrSession(engine, call_id="a", detector=_Loud(), config=cfg, partials=True)  # type: ignore[arg-type]
    b = AsrSession(engine, call_id="b", detector=_Loud(), config=cfg)  # type: ignore[arg-type]
    tone = (0.3 * np.sin(np.arange(RATE) * 0.2)).astype(np.float32)
    # b: a short utterance, then silence: its final goes to the engine and holds it
    b_audio = np.concatenate([tone[: RATE // 2], silence(0.5)])
    for i in range(0, len(b_audio) - FRAME + 1, FRAME):
        await b.feed(b_audio[i : i + FRAME], i / RATE)
    assert await asyncio.to_thread(engine.decoding.wait, 10)
    # a talks on while b's final decodes: every partial due is skipped, none is queued
    for i in range(0, RATE - FRAME + 1, FRAME):
        await a.feed(tone[i : i + FRAME], i / RATE)
    assert a.stats.partials_skipped >= 2 and engine.started == [False]
    engine.release.set()
    async with asyncio.timeout(10):
        events = await b.drain()
    assert [type(e) for e in events] == [Final]
    await a.close()
    await b.close()
