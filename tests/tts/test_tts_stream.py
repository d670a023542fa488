"""TtsStream with real engines: 20 ms frames at the call rate, cancellation, isolation, bad input."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from phoneagent.runtime.errors import EngineFailure, ErrorKind, PhoneAgentError
from phoneagent.tts.engines.base import TtsEngine
from phoneagent.tts.stream import SpeechFailure, SpeechOut, SpeechRequest, TtsStream
from prometheus_client import REGISTRY

pytestmark = pytest.mark.slow

LONG = (
    "Thanks for waiting. I found three open slots next week. The first is on Monday morning. "
    "The second is on Wednesday at noon. The third is on Friday afternoon."
)


async def collect(stream: TtsStream, generation: int, wait_s: float = 60.0) -> list[SpeechOut]:
    """Chunks until the last of ``generation``; fails on anything from another generation."""
    out: list[SpeechOut] = []
    while True:
        item = await asyncio.wait_for(stream.next(), wait_s)
        assert isinstance(item, SpeechOut), item
        assert item.generation_id == generation
        out.append(item)
        if item.last_in_generation:
            return out


def pcm_of(chunks: list[SpeechOut]) -> np.ndarray:
    return np.frombuffer(b"".join(c.pcm for c in chunks), dtype=np.int16)


def metric(name: str, engine: str) -> float:
    return REGISTRY.get_sample_value(name, {"engine": engine}) or 0.0


async def test_reply_streams_as_20ms_frames_at_8k(kokoro_engine: TtsEngine) -> None:
    stream = TtsStream(kokoro_engine, voice="af_heart", sample_rate=8000, call_id="call-a")
    first_text = "Sure, your appointment with Dr. Lee is on Nov 23rd at 3:30 pm."
    ttfa_before = metric("pa_tts_first_audio_seconds_count", "kokoro")
    try:
        assert stream.submit(SpeechRequest(1, 7, 0, first_text))
        assert stream.submit(SpeechRequest(1, 7, 1, "See you then!", final=True))
        chunks = await collect(stream, 7)
    finally:
        await stream.close()
    assert all(len(c.pcm) == 320 and c.sample_rate == 8000 for c in chunks)  # 160 samples = 20 ms
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.turn_id for c in chunks] == [1] * len(chunks)
    seconds = len(chunks) * 0.02
    assert 3.0 < seconds < 12.0
    first = [c for c in chunks if c.sentence_seq == 0]
    second = [c for c in chunks if c.sentence_seq == 1]
    assert first and second and chunks.index(second[0]) == len(first)  # sentences in order
    assert [c.last_in_sentence for c in chunks].count(True) == 2
    assert first[-1].last_in_sentence and first[-1].text_end == len(first_text)
    assert second[-1].text_end == len("See you then!")
    for a, b in zip(first, first[1:], strict=False):
        assert b.text_start == a.text_end and b.text_end >= a.text_end
    assert np.sqrt(np.mean(pcm_of(chunks).astype(np.float64) ** 2)) > 300  # audible speech
    assert metric("pa_tts_first_audio_seconds_count", "kokoro") == ttfa_before + 1
    assert metric("pa_tts_real_time_factor_count", "kokoro") > 0


async def test_16k_calls_get_640_byte_frames(piper_engine: TtsEngine) -> None:
    stream = TtsStream(piper_engine, voice=piper_engine.voices()[0], sample_rate=16000)
    try:
        stream.submit(SpeechRequest(2, 1, 0, "Hello there.", final=True))
        chunks = await collect(stream, 1)
    finally:
        await stream.close()
    assert all(len(c.pcm) == 640 and c.sample_rate == 16000 for c in chunks)
    assert 0.4 < len(chunks) * 0.02 < 3.0


async def test_cancel_mid_reply_stops_that_generation(kokoro_engine: TtsEngine) -> None:
    stream = TtsStream(kokoro_engine, voice="af_heart")
    try:
        for seq, sentence in enumerate(LONG.split(". ")):
            stream.submit(SpeechRequest(3, 1, seq, sentence, final=seq == 4))
        first = await asyncio.wait_for(stream.next(), 60)
        assert isinstance(first, SpeechOut) and first.generation_id == 1
        cancelled_at = time.monotonic()
        stream.cancel(1)
        assert stream.submit(SpeechRequest(3, 1, 5, "Late sentence.")) is False  # stale
        stream.submit(SpeechRequest(4, 2, 0, "Okay, stopping.", final=True))
        reply = await collect(stream, 2)  # fails if any chunk of generation 1 shows up
        # The worker let go of generation 1 within about one chunk of synthesis.
        assert time.monotonic() - cancelled_at < 15
        assert reply[-1].last_in_generation
    finally:
        await stream.close()


class _Watched:
    """A real engine that reports when it has started synthesising (to cancel mid-synthesis)."""

    def __init__(self, inner: TtsEngine) -> None:
        self.inner, self.name, self.native_rate = inner, inner.name, inner.native_rate
        self.started = threading.Event()

    def load(self) -> None: ...

    def voices(self) -> list[str]:
        return self.inner.voices()

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        self.started.set()
        yield from self.inner.synthesize(text, voice, speed)

    def close(self) -> None: ...


async def test_chunk_being_synthesised_when_cancelled_is_discarded(kokoro_engine: TtsEngine) -> None:
    engine = _Watched(kokoro_engine)
    stream = TtsStream(engine, voice="af_bella")
    try:
        stream.submit(SpeechRequest(5, 10, 0, "This sentence is being rendered right now as we cancel it."))
        assert await asyncio.to_thread(engine.started.wait, 30)
        stream.cancel(10)  # the worker is inside the engine for generation 10
        stream.submit(SpeechRequest(6, 11, 0, "Yes?", final=True))
        reply = await collect(stream, 11)  # fails if the rendered chunk of generation 10 shows up
        assert reply[0].seq == 0
    finally:
        await stream.close()


async def test_newer_generation_supersedes_older(piper_engine: TtsEngine) -> None:
    stream = TtsStream(piper_engine, voice=piper_engine.voices()[0])
    try:
        for seq, sentence in enumerate(LONG.split(". ")):
            stream.submit(SpeechRequest(1, 1, seq, sentence, final=seq == 4))
        await asyncio.wait_for(stream.next(), 30)
        stream.submit(SpeechRequest(2, 2, 0, "New reply.", final=True))
        await collect(stream, 2)
    finally:
        await stream.close()


async def test_two_calls_keep_their_audio_apart(kokoro_engine: TtsEngine) -> None:
    text_a, text_b = "Your order has shipped.", "Please hold the line."
    solo = TtsStream(kokoro_engine, voice="af_heart")
    try:
        solo.submit(SpeechRequest(1, 1, 0, text_a, final=True))
        expected_a = pcm_of(await collect(solo, 1))
    finally:
        await solo.close()
    a = TtsStream(kokoro_engine, voice="af_heart", call_id="a")
    b = TtsStream(kokoro_engine, voice="am_michael", call_id="b")
    try:
        a.submit(SpeechRequest(1, 1, 0, text_a, final=True))
        b.submit(SpeechRequest(9, 4, 0, text_b, final=True))
        got_a, got_b = await asyncio.gather(collect(a, 1), collect(b, 4))
    finally:
        await a.close()
        await b.close()
    assert np.array_equal(pcm_of(got_a), expected_a)  # nothing of b mixed into a
    assert all(c.turn_id == 9 for c in got_b)
    assert got_b[-1].text_end == len(text_b)


@pytest.mark.parametrize(
    ("request_", "what"),
    [
        (SpeechRequest(1, 1, 0, ""), "empty"),
        (SpeechRequest(1, 1, 0, "   \n"), "empty"),
        (SpeechRequest(1, 1, 0, "word " * 500), "limit"),
        (SpeechRequest(1, 1, 0, "Hello.", voice="zz_nobody"), "voice"),
        (SpeechRequest(1, 1, 0, "Hello.", speed=9.0), "speed"),
        (SpeechRequest(1, -1, 0, "Hello."), "negative"),
    ],
)
async def test_malformed_requests_are_invalid(
    piper_engine: TtsEngine, request_: SpeechRequest, what: str
) -> None:
    stream = TtsStream(piper_engine, voice=piper_engine.voices()[0], max_chars=1000)
    try:
        with pytest.raises(PhoneAgentError) as err:
            stream.submit(request_)
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT and what in err.value.message
        stream.submit(SpeechRequest(1, 1, 0, "Still here.", final=True))  # the stream goes on
        assert (await collect(stream, 1))[-1].last_in_generation
    finally:
        await stream.close()


async def test_bad_stream_settings_are_invalid(piper_engine: TtsEngine) -> None:
    for kwargs in [{"sample_rate": 44100}, {"voice": "nobody"}, {"speed": 0.1}]:
        options = {"voice": piper_engine.voices()[0], **kwargs}
        with pytest.raises(PhoneAgentError) as err:
            TtsStream(piper_engine, **options)  # type: ignore[arg-type]
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT


class _BreaksOnWord:
    """A real engine that fails on one word: the failure path, with real audio otherwise."""

    def __init__(self, inner: TtsEngine) -> None:
        self.inner, self.name, self.native_rate = inner, inner.name, inner.native_rate

    def load(self) -> None: ...

    def voices(self) -> list[str]:
        return self.inner.voices()

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        if "explode" in text:
            raise EngineFailure("engine broke")
        return self.inner.synthesize(text, voice, speed)

    def close(self) -> None: ...


async def test_engine_failure_is_reported_and_the_stream_goes_on(piper_engine: TtsEngine) -> None:
    stream = TtsStream(_BreaksOnWord(piper_engine), voice=piper_engine.voices()[0])
    try:
        stream.submit(SpeechRequest(1, 1, 0, "Please explode."))
        failure = await asyncio.wait_for(stream.next(), 30)
        assert isinstance(failure, SpeechFailure) and failure.error.kind is ErrorKind.ENGINE_FAILURE
        stream.submit(SpeechRequest(1, 1, 1, "All good.", final=True))
        assert (await collect(stream, 1))[-1].last_in_generation
    finally:
        await stream.close()
