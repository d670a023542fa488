"""The TTS service on a real nats-server (the real SessionHost and real engines): the greeting
comes from the prompt cache, malformed requests get an error event and the call goes on,
a cancel stops a generation on the bus, and two calls keep their audio apart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from phoneagent.agents.disclosure import DISCLOSURE_CORE
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.errors import ErrorKind
from phoneagent.runtime.sessions import claim_session
from phoneagent.tts.prompts import FixedPrompts, PromptCache, sentences
from phoneagent.tts.service import TtsCallSession, TtsService
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2, speech_pb2
from support.common import wait_for
from support.tts import start_service, stop_service

pytestmark = pytest.mark.slow

GREETING = "Thank you for calling Bright Smile Dental. How can I help you today?"  # the demo agent's
LONG = " ".join(
    f"Option {word} is a visit on a weekday morning with a hygienist, and it takes about an hour."
    for word in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
)


class Call:
    """One call as the edge and policy see it: what TTS publishes on its subjects."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.call_id = subjects.new_call_id()
        self.chunks: list[media_pb2.SpeechChunk] = []
        self.errors: list[control_pb2.ControlEvent] = []
        self.foreign: list[str] = []  # call ids of chunks that arrived on this call's subject

    async def start(self, rate: int = 8000) -> None:
        async def on_chunk(chunk: media_pb2.SpeechChunk, _: Delivery) -> None:
            if chunk.meta.call_id != self.call_id:
                self.foreign.append(chunk.meta.call_id)
            self.chunks.append(chunk)

        async def on_control(ev: control_pb2.ControlEvent, _: Delivery) -> None:
            if ev.WhichOneof("kind") == "error":
                self.errors.append(ev)

        # A cached greeting arrives all at once (~300 chunks): keep them all, as the edge does
        # (the default queue of 256 drops the oldest on a loaded machine).
        await self.bus.subscribe(
            subjects.speech(self.call_id), media_pb2.SpeechChunk, on_chunk, max_pending=3000
        )
        await self.bus.subscribe(
            subjects.control(self.call_id), control_pb2.ControlEvent, on_control, lane=Lane.CONTROL
        )
        started = call_pb2.CallStarted(
            meta=common_pb2.EventMeta(call_id=self.call_id),
            direction=call_pb2.DIRECTION_INBOUND,
            playout_rate=rate,
        )
        await claim_session(self.bus, "tts", started)

    async def say(
        self, generation: int, seq: int, text: str, *, final: bool = False, voice: str = ""
    ) -> None:
        meta = common_pb2.EventMeta(call_id=self.call_id, turn_id=1, generation_id=generation)
        msg = speech_pb2.AgentText(meta=meta, sentence_seq=seq, text=text, final=final, voice=voice)
        await self.bus.publish(subjects.say(self.call_id), msg)

    async def cancel(self, generation: int) -> None:
        ev = control_pb2.ControlEvent(
            meta=common_pb2.EventMeta(call_id=self.call_id, generation_id=generation),
            cancel=control_pb2.CancelGeneration(generation_id=generation),
        )
        await self.bus.publish(subjects.control(self.call_id), ev, lane=Lane.CONTROL)

    def of(self, generation: int) -> list[media_pb2.SpeechChunk]:
        return [c for c in self.chunks if c.meta.generation_id == generation]

    async def ended(self, generation: int, timeout: float = 60.0) -> list[media_pb2.SpeechChunk]:
        await wait_for(lambda: any(c.last_in_generation for c in self.of(generation)), timeout)
        return self.of(generation)


def session_of(svc: TtsService, call_id: str) -> TtsCallSession:
    assert svc.sessions is not None
    session = svc.sessions.sessions[call_id].session
    assert isinstance(session, TtsCallSession)
    return session


def pcm(chunks: list[media_pb2.SpeechChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(c.pcm for c in chunks), dtype=np.int16)


def test_fixed_prompts_are_the_words_policy_lets_out() -> None:
    prompts = FixedPrompts.for_agent(GREETING)
    assert prompts.greeting == f"{DISCLOSURE_CORE} {GREETING}"
    added = FixedPrompts.for_agent(GREETING, "Calls are handled by Bright Smile's assistant.")
    assert sentences(added.greeting)[:2] == [
        DISCLOSURE_CORE,
        "Calls are handled by Bright Smile's assistant.",
    ]


async def test_greeting_is_played_from_the_cache_without_synthesis(
    nats_url: str, bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kokoro renders the same text to the same samples, so the cached audio can be compared
    # with a fresh synthesis byte for byte (Piper samples noise: no two renders are equal).
    svc = await start_service(nats_url, tmp_path / "cache", "tts-kokoro-t", "kokoro")
    try:
        engine = svc.engines["kokoro"]
        cache = svc.prompts[("kokoro", 8000)]
        greeting = FixedPrompts.for_agent(GREETING).greeting  # what policy publishes on the say subject
        parts = sentences(greeting)
        await svc.prerendering[("kokoro", "af_heart", 8000)]  # rendered in the background from start-up
        assert svc.fixed is not None and len(parts) == 3
        assert cache.misses == len(svc.fixed.sentences()) >= 3

        calls: list[str] = []
        synthesize = engine.synthesize

        def counting(text: str, voice: str, speed: float = 1.0) -> Any:
            calls.append(text)
            return synthesize(text, voice, speed)

        monkeypatch.setattr(engine, "synthesize", counting)
        hits = cache.hits
        call = Call(bus)
        await call.start(8000)
        await call.say(0, 0, greeting)
        await call.say(0, 1, "", final=True)
        chunks = await call.ended(0)
        assert calls == [] and cache.hits == hits + 3  # every sentence from the cache, no synthesis

        fresh = PromptCache(engine, sample_rate=8000, directory=tmp_path / "fresh")
        pause = np.zeros(int(0.2 * 8000), dtype=np.int16)
        expected = np.concatenate([x for part in parts for x in (fresh.get(part, "af_heart"), pause)])
        assert fresh.misses == 3 and calls == parts  # really synthesised again, sentence by sentence
        played = pcm(chunks)
        assert np.array_equal(played[: expected.size], expected)  # byte-identical to a fresh synthesis
        assert not played[expected.size :].any() and played.size - expected.size < 160
        assert chunks[-2].last_in_sentence and chunks[-2].text_end == len(greeting)
    finally:
        await stop_service(svc)


async def test_malformed_requests_get_an_error_event_and_the_call_goes_on(
    piper_tts: TtsService, bus: Bus
) -> None:
    call = Call(bus)
    await call.start(8000)
    await call.say(1, 0, "   ")  # empty, and not the end-of-generation marker
    await call.say(1, 1, "Hello there.", voice="nobody")  # a voice the engine does not have
    await call.say(1, 2, "word " * 2000)  # 10,000 characters: under the bus limit, over TTS's
    await wait_for(lambda: len(call.errors) == 3, 10)
    for ev, words in zip(
        call.errors, ("empty", "unknown voice 'nobody'", "over the 2000 limit"), strict=True
    ):
        assert (
            ev.error.source == "tts"
            and ev.error.kind == ErrorKind.INVALID_ARGUMENT.wire
            and not ev.error.retryable
        )
        assert words in ev.error.message
        assert ev.meta.call_id == call.call_id and ev.meta.generation_id == 1
    await call.say(1, 3, "Your appointment is on Monday.")
    await call.say(1, 4, "", final=True)
    chunks = await call.ended(1)  # the generation still ends, with the good sentence spoken
    assert {c.sentence_seq for c in chunks if c.pcm} == {3}
    assert pcm(chunks).size > 8000 and chunks[-1].sentence_seq == 4
    assert len(call.errors) == 3 and not call.foreign


async def test_cancel_on_the_control_lane_stops_a_generation_on_the_bus(
    piper_tts: TtsService, bus: Bus
) -> None:
    call = Call(bus)
    await call.start(8000)
    await call.say(2, 0, LONG)  # about a minute of speech
    await wait_for(lambda: call.of(2), 30)
    cancelled_at = asyncio.get_running_loop().time()
    await call.cancel(2)
    session = session_of(piper_tts, call.call_id)
    await wait_for(lambda: session.floor == 3, 5)  # the cancel was handled
    await call.say(3, 0, "Okay.")
    await call.say(3, 1, "", final=True)
    await call.ended(3)
    stopped_after = asyncio.get_running_loop().time() - cancelled_at

    # The service publishes in order on one connection: what it sent of generation 2 before the
    # cancel was handled arrives before generation 3's first chunk; at most one chunk was in flight.
    first_new = next(i for i, c in enumerate(call.chunks) if c.meta.generation_id == 3)
    late = [c for c in call.chunks[first_new:] if c.meta.generation_id == 2]
    assert len(late) <= 1
    old = call.of(2)
    assert not any(c.last_in_generation for c in old)  # a cancelled generation is not ended as played
    assert len(old) * 0.02 < 20.0  # far less than the minute of speech asked for
    assert stopped_after < 10.0  # generation 3 was spoken right after, not behind the old audio


async def test_two_calls_at_once_keep_their_audio_on_their_own_subjects(
    piper_tts: TtsService, bus: Bus
) -> None:
    phone, browser = Call(bus), Call(bus)
    await phone.start(8000)
    await browser.start(16000)
    texts = {
        phone: "Your cleaning is on Monday at nine.",
        browser: "The office is closed on Sunday, sorry about that.",
    }
    for call, text in texts.items():
        await call.say(5, 0, text)
        await call.say(5, 1, "", final=True)
    for call, rate in ((phone, 8000), (browser, 16000)):
        chunks = await call.ended(5)
        assert not call.foreign and not call.errors
        assert all(c.meta.call_id == call.call_id for c in call.chunks)
        spoken = [c for c in chunks if c.pcm]
        assert all(c.sample_rate == rate and len(c.pcm) == rate // 50 * 2 for c in spoken)  # 20 ms frames
        assert [c.sequence for c in chunks] == list(range(len(chunks)))
        ends = [c.text_end for c in spoken if c.last_in_sentence]
        assert ends == [len(texts[call])]  # the audio speaks this call's own sentence
        assert pcm(spoken).size / rate > 1.0


async def test_a_final_sentence_with_text_ends_its_generation(piper_tts: TtsService, bus: Bus) -> None:
    call = Call(bus)
    await call.start(8000)
    await call.say(6, 0, "Goodbye.", final=True)  # no separate empty end marker
    chunks = await call.ended(6, 30)
    assert chunks[-1].last_in_generation and not chunks[-1].pcm and chunks[-1].sentence_seq == 1
    assert sum(c.last_in_generation for c in chunks) == 1 and pcm(chunks).size > 4000
