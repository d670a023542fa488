"""TTS service: one session per call, claimed from the ``tts`` queue group.

Takes the sentences policy approved for speech (the call's ``say`` subject), synthesises
them as soon as each arrives (the first clause is kept short), and publishes 20 ms speech
chunks at the call's rate. A cancel or barge-in for a generation stops its synthesis within
one chunk; nothing of that generation is published afterwards. An empty final sentence
marks the end of a generation (as does a final sentence with text): it becomes an empty
chunk flagged ``last_in_generation`` once the generation's audio is out, so the edge knows
when playback is complete. An empty sentence that is not final is malformed: it is answered
with an error event.

The sentences the agent says word for word (its greeting behind policy's AI disclosure,
the recording notice and consent question, the transfer words) are rendered in the
background from start-up for the default voice and call rate, and from the first call of
another rate, and are then played from the prompt cache without synthesis (see
:mod:`phoneagent.tts.prompts`).

Any replica also answers ``pa.v1.tts.render`` (queue group ``tts``): a short text rendered
whole in the calls' voice, at the rate asked for -- the edge's warm-transfer summary, so the
edge loads no engine (:mod:`phoneagent.tts.render`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from phoneagent.agents.agent import load_agent
from phoneagent.runtime import subjects, telemetry
from phoneagent.runtime.bus import Delivery, Lane, Subscription
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.service import Service
from phoneagent.runtime.settings import CommonSettings
from phoneagent.tts import render
from phoneagent.tts.engines.base import TtsEngine, create_engine
from phoneagent.tts.prompts import FixedPrompts, PromptCache
from phoneagent.tts.settings import TtsSettings
from phoneagent.tts.stream import SpeechFailure, SpeechOut, SpeechRequest, TtsStream
from phoneagent.v1 import common_pb2, control_pb2, media_pb2, session_pb2, speech_pb2

log = logging.getLogger(__name__)
SETTINGS = TtsSettings


class TtsCallSession:
    def __init__(self, svc: TtsService, claim: session_pb2.SessionClaim) -> None:
        self.svc = svc
        self.call_id = claim.call.meta.call_id
        # The edge says at which rate it plays this call (8 kHz phone, 16 kHz browser).
        self.rate = claim.call.playout_rate or svc.settings.sample_rate
        self.stream: TtsStream | None = None
        self.subs: list[Subscription[Any]] = []
        self.pump: asyncio.Task[None] | None = None
        self.floor = 0  # generations below this are cancelled
        self.ends: dict[int, int] = {}  # generation -> sentence count, once its end marker arrived
        self.done_sentences: dict[int, int] = {}  # generation -> sentences fully rendered
        self.chunk_seq: dict[int, int] = {}
        self.turns: dict[int, int] = {}
        self.spans: dict[int, Any] = {}  # generation -> its turn's span, ended at its first audio

    async def start(self) -> None:
        engine, voice = self.svc.voice_for_call()
        self.stream = TtsStream(
            engine,
            voice=voice,
            sample_rate=self.rate,
            speed=self.svc.settings.speed,
            call_id=self.call_id,
            prompts=self.svc.prompts_for(engine, voice, self.rate),
        )
        self.pump = self.svc.tasks.spawn(self._pump(), f"tts-pump:{self.call_id}")
        bus = self.svc.bus
        self.subs.append(
            await bus.subscribe(
                subjects.say(self.call_id), speech_pb2.AgentText, self.on_text, max_pending=256
            )
        )
        self.subs.append(
            await bus.subscribe(
                subjects.control(self.call_id), control_pb2.ControlEvent, self.on_control, lane=Lane.CONTROL
            )
        )

    async def on_text(self, msg: speech_pb2.AgentText, d: Delivery) -> None:
        gen = msg.meta.generation_id
        if gen < self.floor or self.stream is None:
            return
        if gen not in self.spans and (span := telemetry.start_child(d.headers, "tts.say", generation=gen)):
            self.spans[gen] = span
        self.turns[gen] = msg.meta.turn_id
        if msg.final:  # the last sentence: an empty end marker, or one with text that ends it
            self.ends[gen] = msg.sentence_seq + (1 if msg.text.strip() else 0)
            if not msg.text.strip():
                await self._maybe_end(gen)
                return
        try:
            self.stream.submit(
                SpeechRequest(
                    turn_id=msg.meta.turn_id,
                    generation_id=gen,
                    sequence=msg.sentence_seq,
                    text=msg.text,
                    final=msg.final,
                    voice=msg.voice,
                )
            )
        except PhoneAgentError as exc:
            await self._error(exc, msg.meta)
            self.done_sentences[gen] = max(self.done_sentences.get(gen, 0), msg.sentence_seq + 1)
            await self._maybe_end(gen)

    async def on_control(self, ev: control_pb2.ControlEvent, _: Delivery) -> None:
        kind = ev.WhichOneof("kind")
        if kind == "barge_in":
            self._cancel(ev.barge_in.interrupted_generation_id)
        elif kind == "cancel":
            self._cancel(ev.cancel.generation_id)

    def _cancel(self, generation: int) -> None:
        if self.stream is not None:
            self.stream.cancel(generation)
        self.floor = max(self.floor, generation + 1)
        for g in [g for g in self.spans if g < self.floor]:
            self.spans.pop(g).end()
        for table in (self.ends, self.done_sentences, self.chunk_seq, self.turns):
            for g in [g for g in table if g < self.floor]:
                del table[g]

    async def _pump(self) -> None:
        assert self.stream is not None
        async for item in self.stream:
            gen = item.generation_id
            if gen < self.floor:
                continue
            if isinstance(item, SpeechFailure):
                await self._error(item.error, None, gen)
                self.done_sentences[gen] = max(self.done_sentences.get(gen, 0), item.sentence_seq + 1)
            else:
                await self._publish_chunk(item)
                if item.last_in_sentence:
                    self.done_sentences[gen] = max(self.done_sentences.get(gen, 0), item.sentence_seq + 1)
            await self._maybe_end(gen)

    def _meta(self, gen: int) -> common_pb2.EventMeta:
        return new_meta(
            self.call_id, f"tts/{self.svc.replica}", turn_id=self.turns.get(gen, 0), generation_id=gen
        )

    async def _publish_chunk(self, out: SpeechOut) -> None:
        seq = self.chunk_seq.get(out.generation_id, 0)
        self.chunk_seq[out.generation_id] = seq + 1
        chunk = media_pb2.SpeechChunk(
            meta=self._meta(out.generation_id),
            sequence=seq,
            pcm=out.pcm,
            sample_rate=out.sample_rate,
            sentence_seq=out.sentence_seq,
            text_start=out.text_start,
            text_end=out.text_end,
            last_in_sentence=out.last_in_sentence,
            synth_ms=out.synth_ms if seq == 0 else 0,
        )
        span = self.spans.pop(out.generation_id, None) if seq == 0 else None
        headers = telemetry.headers_for(span) if span is not None else None  # the edge joins the trace
        await self.svc.bus.publish(subjects.speech(self.call_id), chunk, headers=headers)
        if span is not None:
            span.end()

    async def _maybe_end(self, gen: int) -> None:
        if gen in self.ends and self.done_sentences.get(gen, 0) >= self.ends[gen]:
            seq = self.chunk_seq.get(gen, 0)
            chunk = media_pb2.SpeechChunk(
                meta=self._meta(gen),
                sequence=seq,
                sample_rate=self.rate,
                sentence_seq=self.ends.pop(gen),
                last_in_generation=True,
            )
            await self.svc.bus.publish(subjects.speech(self.call_id), chunk)

    async def _error(self, exc: PhoneAgentError, meta: common_pb2.EventMeta | None, gen: int = 0) -> None:
        ev = control_pb2.ControlEvent(meta=meta or self._meta(gen))
        ev.error.CopyFrom(
            common_pb2.Error(kind=exc.kind.wire, retryable=exc.retryable, message=exc.message, source="tts")  # type: ignore[arg-type]
        )
        await self.svc.bus.publish(subjects.control(self.call_id), ev, lane=Lane.CONTROL)

    async def close(self, reason: str) -> None:
        for sub in self.subs:
            await self.svc.bus.unsubscribe(sub)
        for span in self.spans.values():
            span.end()
        self.spans.clear()
        if self.stream is not None:
            await self.stream.close()
        if self.pump is not None:
            self.pump.cancel()
            await asyncio.gather(self.pump, return_exceptions=True)


class TtsService(Service):
    name = "tts"
    stage = "tts"

    def __init__(self, common: CommonSettings, settings: TtsSettings) -> None:
        super().__init__(common)
        self.settings = settings
        self.engines: dict[str, TtsEngine] = {}
        self.agent_voice: tuple[str, str] = ("", "")
        self.fixed: FixedPrompts | None = None
        self.prompts: dict[tuple[str, int], PromptCache] = {}  # (engine, call rate) -> cache
        # (engine, voice, rate) -> the task rendering its prompts (done or under way)
        self.prerendering: dict[tuple[str, str, int], asyncio.Task[None]] = {}

    async def setup(self) -> None:
        agent = load_agent(self.common.agent_path)
        self.agent_voice = (agent.voice.engine, agent.voice.voice)
        for name in self.settings.engines:
            engine = create_engine(name, **self.engine_options(name))
            await asyncio.to_thread(engine.load)
            self.engines[name] = engine
            log.info("tts engine loaded", extra={"engine": name})
        # Fail at start-up, not on the first call, if the engine or voice is unknown.
        engine, voice = self.voice_for_call()
        if self.settings.prerender:
            # In the background: the service is ready at once (Kokoro on a CPU takes tens of
            # seconds the first time; then the prompts come from disk). Until a sentence is
            # rendered, a call that needs it has it synthesised as any other.
            self.fixed = FixedPrompts.for_agent(agent.greeting, self.settings.disclosure_addition)
            self.prompts_for(engine, voice, self.settings.sample_rate)

    async def serve_requests(self) -> None:
        """Speech the edge plays outside a call's stream (the warm-transfer summary), on request."""
        await self.bus.serve(
            subjects.tts_render(),
            media_pb2.RenderRequest,
            self.on_render,
            queue_group="tts",
            lane=Lane.DATA,
            max_pending=16,
        )

    async def on_render(self, req: media_pb2.RenderRequest, _: Delivery) -> media_pb2.RenderReply:
        """Render ``req.text`` whole with the calls' voice; errors are answered, never raised."""
        meta = new_meta(req.meta.call_id, f"tts/{self.replica}")
        try:
            engine, voice = self.voice_for_call()
            pcm = await asyncio.to_thread(render.render, engine, voice, self.settings.speed, req)
        except Exception as exc:
            error = render.failure(exc)
            log.warning("tts render refused", extra={"call_id": req.meta.call_id, "error": error.kind.name})
            return render.error_reply(meta, error)
        return media_pb2.RenderReply(meta=meta, pcm=pcm.astype("<i2").tobytes(), sample_rate=req.sample_rate)

    def engine_options(self, name: str) -> dict[str, Any]:
        return self.settings.engine_options(name)

    def prompts_for(self, engine: TtsEngine, voice: str, rate: int) -> PromptCache | None:
        """The prompt cache for calls at ``rate``, rendered in the background on its first use."""
        if self.fixed is None:
            return None
        cache = self._cache(engine, rate)
        key = (engine.name, voice, rate)
        if key not in self.prerendering:
            name = f"tts-prerender:{engine.name}:{rate}"
            self.prerendering[key] = self.tasks.spawn(self._prerender(engine, voice, rate), name)
        return cache

    def _cache(self, engine: TtsEngine, rate: int) -> PromptCache:
        cache = self.prompts.get((engine.name, rate))
        if cache is None:
            directory = Path(self.settings.prompt_dir) if self.settings.prompt_dir else None
            cache = PromptCache(engine, sample_rate=rate, directory=directory)
            self.prompts[(engine.name, rate)] = cache
        return cache

    async def _prerender(self, engine: TtsEngine, voice: str, rate: int) -> None:
        assert self.fixed is not None
        started = time.monotonic()
        cache = self._cache(engine, rate)
        count = 0
        for sentence in self.fixed.sentences():  # one at a time: a shutdown stops between them
            await asyncio.to_thread(cache.get, sentence, voice, self.settings.speed)
            count += 1
        log.info(
            "tts prompts ready",
            extra={
                "engine": engine.name,
                "sample_rate": rate,
                "sentences": count,
                "seconds": round(time.monotonic() - started, 2),
            },
        )

    def voice_for_call(self) -> tuple[TtsEngine, str]:
        """The engine and voice of a call: the agent file's ``voice``, unless the environment says.

        PA_TTS_ENGINE overrides the file's engine (a GPU image runs kokoro-torch for an agent
        written for kokoro); the file's voice is kept when that engine has it, else the
        engine's default voice is used. PA_TTS_VOICE overrides the voice.
        """
        name = self.settings.engine or self.agent_voice[0] or self.settings.engines[0]
        if name not in self.engines:
            raise InvalidArgument(f"TTS engine {name!r} is not loaded; add it to PA_TTS_ENGINES")
        engine = self.engines[name]
        voice = self.settings.voice
        if not voice and self.agent_voice[1] in engine.voices():
            voice = self.agent_voice[1]
        return engine, voice or engine.voices()[0]

    async def new_session(self, claim: session_pb2.SessionClaim, taken_over: bool) -> TtsCallSession:
        return TtsCallSession(self, claim)

    async def teardown(self) -> None:
        for task in self.prerendering.values():  # no prompt is rendered on a closed engine
            task.cancel()
        await asyncio.gather(*self.prerendering.values(), return_exceptions=True)
        for engine in self.engines.values():
            engine.close()

    def status(self) -> dict[str, object]:
        pending = sum(not t.done() for t in self.prerendering.values())
        return {"engines": ",".join(self.engines), "prompts_rendering": pending}
