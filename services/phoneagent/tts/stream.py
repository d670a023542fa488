"""Streaming synthesis for one call: agent text in, 20 ms PCM chunks at the call's rate out.

A worker thread renders requests in order: split into chunks (short first clause), spell
out numbers and dates, synthesise, resample to the call rate, cut into 20 ms frames.
``cancel(generation_id)`` (barge-in) drops that generation and every older one: the
worker stops between engine chunks, frames already queued are purged, and nothing of a
cancelled generation is handed out afterwards. A request of a newer generation
supersedes older ones the same way. Call ``submit``, ``cancel`` and ``next`` from the
event loop the stream was created on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass

import numpy as np

from phoneagent.audio.resample import StreamResampler
from phoneagent.runtime.errors import EngineFailure, ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.runtime.metrics import TTS_FIRST_AUDIO_LATENCY, TTS_RTF
from phoneagent.tts.chunker import ChunkPolicy, TextChunk, sentence_spans, split_text
from phoneagent.tts.engines.base import TtsEngine, check_speed, check_voice
from phoneagent.tts.framer import Frame, Framer, coverage
from phoneagent.tts.normalize import normalize
from phoneagent.tts.outbox import Outbox, OutboxClosed
from phoneagent.tts.prompts import PromptCache

log = logging.getLogger(__name__)

CALL_RATES = (8000, 16000)
FRAME_MS = 20


@dataclass(frozen=True)
class SpeechRequest:
    """One piece of agent text (an ``AgentText``): usually one sentence of a reply."""

    turn_id: int
    generation_id: int
    sequence: int  # AgentText.sentence_seq, 0 for the first sentence of a generation
    text: str
    final: bool = False  # last sentence of the generation
    voice: str = ""  # "" = the stream's voice
    speed: float | None = None


@dataclass(frozen=True)
class SpeechOut:
    """20 ms of speech (a ``SpeechChunk``): int16 little-endian mono PCM at ``sample_rate``."""

    turn_id: int
    generation_id: int
    seq: int  # position within the generation, from 0
    sentence_seq: int
    pcm: bytes
    sample_rate: int
    text_start: int  # [text_start, text_end) of the request text completed by this chunk
    text_end: int
    last_in_sentence: bool
    last_in_generation: bool
    synth_ms: int = 0  # synthesis time of the text this audio came from (benchmark breakdown)


@dataclass(frozen=True)
class SpeechFailure:
    """A request that could not be rendered; the stream goes on with the next one."""

    turn_id: int
    generation_id: int
    sentence_seq: int
    error: PhoneAgentError


@dataclass
class _Job:
    req: SpeechRequest
    voice: str
    speed: float
    received: float  # time.monotonic() at submit


class TtsStream:
    def __init__(
        self,
        engine: TtsEngine,
        *,
        voice: str,
        sample_rate: int = 8000,
        speed: float = 1.0,
        call_id: str = "",
        max_chars: int = 2000,
        policy: ChunkPolicy | None = None,
        sentence_pause_s: float = 0.2,
        clause_pause_s: float = 0.08,
        max_queued_s: float = 60.0,
        max_pending: int = 64,
        prompts: PromptCache | None = None,
    ) -> None:
        if sample_rate not in CALL_RATES:
            raise InvalidArgument(f"sample_rate must be one of {CALL_RATES}, got {sample_rate}")
        self.engine = engine
        self.sample_rate = sample_rate
        self.voice = check_voice(voice, engine.voices())
        self.speed = check_speed(speed)
        self.call_id = call_id
        self.max_chars = max_chars
        self._policy = policy or ChunkPolicy()
        if prompts is not None and (prompts.sample_rate != sample_rate or prompts.engine is not engine):
            raise InvalidArgument("prompt cache must use the stream's engine and sample rate")
        self._prompts = prompts
        self._pauses = (clause_pause_s, sentence_pause_s)
        self._frame = sample_rate * FRAME_MS // 1000
        self._resampler = StreamResampler(engine.native_rate, sample_rate)
        self._framer = Framer(self._frame)
        self._floor = 0  # generations below this are cancelled
        self._lock = threading.Lock()
        self._outbox: Outbox[SpeechOut | SpeechFailure] = Outbox(
            asyncio.get_running_loop(), limit=int(max_queued_s * 1000 / FRAME_MS)
        )
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_pending)
        self._gen = -1  # generation being rendered, and its next chunk position
        self._gen_seq = 0
        self._first_audio_pending: dict[int, float] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tts-stream", daemon=True)
        self._thread.start()

    # --- event-loop side ------------------------------------------------------------------
    def submit(self, req: SpeechRequest) -> bool:
        """Queue a request; False when its generation is already cancelled or superseded."""
        if self._closed:
            raise PhoneAgentError(ErrorKind.UNAVAILABLE, "tts stream is closed")
        job = self._validate(req)
        with self._lock:
            if req.generation_id < self._floor:
                return False
            self._supersede(req.generation_id)
            self._first_audio_pending.setdefault(req.generation_id, job.received)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise PhoneAgentError(
                ErrorKind.OVERLOADED, "too many pending tts requests for this call"
            ) from None
        return True

    def cancel(self, generation_id: int) -> None:
        """Stop ``generation_id`` and every older generation; nothing of them is handed out after this."""
        with self._lock:
            dropped = self._supersede(generation_id + 1)
        log.info(
            "tts generation cancelled",
            extra={"call_id": self.call_id, "generation_id": generation_id, "dropped_chunks": dropped},
        )

    async def next(self) -> SpeechOut | SpeechFailure:
        """The next chunk (or failure) of a live generation, waiting for it."""
        while True:
            try:
                item = await self._outbox.get()
            except OutboxClosed:
                raise PhoneAgentError(ErrorKind.UNAVAILABLE, "tts stream is closed") from None
            if not self._stale(item.generation_id):
                return item

    async def __aiter__(self) -> AsyncIterator[SpeechOut | SpeechFailure]:
        """Chunks until the stream is closed."""
        while True:
            try:
                item = await self._outbox.get()
            except OutboxClosed:
                return
            if not self._stale(item.generation_id):
                yield item

    async def close(self, join_s: float = 5.0) -> None:
        """Stop the worker (waiting at most ``join_s`` for the chunk in progress) and end iteration."""
        if self._closed:
            return
        self._closed = True
        self.cancel(2**62)
        with contextlib.suppress(queue.Full):
            self._jobs.put_nowait(None)
        await asyncio.to_thread(self._thread.join, join_s)
        self._outbox.close()

    def _validate(self, req: SpeechRequest) -> _Job:
        if not req.text or not req.text.strip():
            raise InvalidArgument("tts request text is empty")
        if len(req.text) > self.max_chars:
            raise InvalidArgument(
                f"tts request text is {len(req.text)} characters, over the {self.max_chars} limit"
            )
        if req.generation_id < 0 or req.turn_id < 0 or req.sequence < 0:
            raise InvalidArgument("tts request ids must not be negative")
        voice = check_voice(req.voice, self.engine.voices()) if req.voice else self.voice
        speed = check_speed(req.speed) if req.speed is not None else self.speed
        return _Job(req, voice, speed, time.monotonic())

    def _supersede(self, floor: int) -> int:
        """Cancel generations below ``floor``; the number of queued chunks dropped. Holds self._lock."""
        if floor <= self._floor:
            return 0
        self._floor = floor
        for gen in [g for g in self._first_audio_pending if g < floor]:
            del self._first_audio_pending[gen]
        return self._outbox.purge(lambda item: item.generation_id < floor)

    def _stale(self, generation_id: int) -> bool:
        return generation_id < self._floor

    # --- worker thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._closed:
                return
            if self._stale(job.req.generation_id):
                continue
            try:
                self._render(job)
            except PhoneAgentError as exc:
                self._fail(job, exc)
            except Exception:  # an engine bug must not kill the call's stream
                log.exception(
                    "tts render failed", extra={"call_id": self.call_id, "engine": self.engine.name}
                )
                self._fail(job, EngineFailure("speech synthesis failed"))

    def _fail(self, job: _Job, exc: PhoneAgentError) -> None:
        req = job.req
        log.warning(
            "tts request failed",
            extra={
                "call_id": self.call_id,
                "engine": self.engine.name,
                "kind": exc.kind.name,
                "generation_id": req.generation_id,
            },
        )
        self._restart()
        failure = SpeechFailure(req.turn_id, req.generation_id, req.sequence, exc)
        self._outbox.put(failure, lambda: not self._stale(req.generation_id))

    def _restart(self) -> None:
        self._resampler.reset()
        self._framer.reset()

    def _render(self, job: _Job) -> None:
        req = job.req
        if req.generation_id != self._gen:
            self._gen, self._gen_seq = req.generation_id, 0
            self._restart()
        segments = self._segments(job)
        for i, (start, end, cached) in enumerate(segments):
            pause = not (i == len(segments) - 1 and req.final)
            if cached is not None:
                done = self._play_cached(job, cached, start, end, pause=pause)
            else:
                done = self._synthesise(job, start, end, first=req.sequence == 0 and i == 0, pause=pause)
            if not done:
                self._restart()
                return
        self._emit(job, self._framer.finish(), closing=True)

    def _segments(self, job: _Job) -> list[tuple[int, int, np.ndarray | None]]:
        """[start, end) runs of the request text: a cached sentence each, or uncached sentences together."""
        text = job.req.text
        if self._prompts is None:
            return [(0, len(text), None)]
        out: list[tuple[int, int, np.ndarray | None]] = []
        for start, end in sentence_spans(text):
            cached = self._prompts.lookup(text[start:end], job.voice, job.speed)
            if cached is None and out and out[-1][2] is None:
                out[-1] = (out[-1][0], end, None)
            else:
                out.append((start, end, cached))
        return out or [(0, len(text), None)]

    def _play_cached(self, job: _Job, pcm: np.ndarray, start: int, end: int, *, pause: bool) -> bool:
        """A pre-rendered sentence: its audio at once, then the sentence pause."""
        if self._stale(job.req.generation_id):
            return False
        frames = self._framer.push(pcm, coverage(len(pcm), job.req.text, start, end))
        if pause:
            silence = np.zeros(int(self._pauses[1] * self.sample_rate), dtype=np.int16)
            frames += self._framer.push(silence, end)
        return self._emit(job, frames)

    def _synthesise(self, job: _Job, start: int, end: int, *, first: bool, pause: bool) -> bool:
        """Render ``text[start:end]`` chunk by chunk; False when its generation was cancelled meanwhile."""
        text = job.req.text
        chunks = [
            TextChunk(c.text, c.start + start, c.end + start, c.sentence_end)
            for c in split_text(text[start:end], first_in_reply=first, policy=self._policy)
        ]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            if not self._render_chunk(job, chunk, pause=pause or not last):
                return False
        tail = chunks[-1].end if chunks else end
        return self._emit(job, self._framer.push(self._resampler.flush(), tail))

    def _render_chunk(self, job: _Job, chunk: TextChunk, *, pause: bool) -> bool:
        """Synthesise one chunk; False when its generation was cancelled meanwhile."""
        if self._stale(job.req.generation_id):
            return False
        started = time.monotonic()
        pieces = []
        with contextlib.closing(self._pieces(normalize(chunk.text), job)) as produced:
            for audio in produced:
                if self._stale(job.req.generation_id):
                    return False  # the engine's generator is closed: no further work
                pieces.append(audio)
        native = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        if native.size:
            TTS_RTF.labels(self.engine.name).observe(
                (time.monotonic() - started) * self.engine.native_rate / native.size
            )
        pcm = self._resampler.process(native)
        frames = self._framer.push(pcm, coverage(len(pcm), job.req.text, chunk.start, chunk.end))
        if pause:
            seconds = self._pauses[1] if chunk.sentence_end else self._pauses[0]
            silence = np.zeros(int(seconds * self.engine.native_rate), dtype=np.float32)
            frames += self._framer.push(self._resampler.process(silence), chunk.end)
        return self._emit(job, frames, synth_ms=round((time.monotonic() - started) * 1000))

    def _pieces(self, text: str, job: _Job) -> Generator[np.ndarray, None, None]:
        if text.strip():
            yield from self.engine.synthesize(text, job.voice, job.speed)

    def _emit(self, job: _Job, frames: list[Frame], *, closing: bool = False, synth_ms: int = 0) -> bool:
        req = job.req
        for i, frame in enumerate(frames):
            last = closing and i == len(frames) - 1
            out = SpeechOut(
                req.turn_id,
                req.generation_id,
                self._gen_seq,
                req.sequence,
                frame.pcm,
                self.sample_rate,
                frame.text_start,
                frame.text_end,
                last_in_sentence=last,
                last_in_generation=last and req.final,
                synth_ms=synth_ms,
            )
            if not self._outbox.put(out, lambda: not self._stale(req.generation_id) and not self._closed):
                return False
            self._gen_seq += 1
            self._observe_first_audio(req.generation_id)
        return True

    def _observe_first_audio(self, generation_id: int) -> None:
        with self._lock:
            received = self._first_audio_pending.pop(generation_id, None)
        if received is not None:
            TTS_FIRST_AUDIO_LATENCY.labels(self.engine.name).observe(time.monotonic() - received)
