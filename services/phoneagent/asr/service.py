"""ASR service: one session per call, claimed from the ``asr`` queue group.

Subscribes to the call's caller audio (16 kHz frames from the edge), runs endpointing and
decoding (:class:`phoneagent.asr.stream.AsrSession`), and publishes "caller started
speaking", partials and errors on the call's asr subject and finals on its transcript subject.
Speech-started goes on the control lane so it is never queued behind partials; the browser
page shows it. Barge-in does not wait for it: the edge pauses playout on its own VAD and
confirms the barge-in with a final transcript. The llm reacts to errors (the caller is asked
to say it again: :mod:`phoneagent.llm.asr_errors`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from phoneagent.asr import segmenter as seg
from phoneagent.asr import stream
from phoneagent.asr.engines.base import AsrEngine, create_engine, engine_options
from phoneagent.asr.resume import FrameGate
from phoneagent.asr.settings import AsrSettings
from phoneagent.asr.turn_model import SmartTurn
from phoneagent.runtime import streams, subjects, telemetry
from phoneagent.runtime.bus import Delivery, Lane, Subscription
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.metrics import CALLER_AUDIO_LOST
from phoneagent.runtime.service import Service
from phoneagent.runtime.sessions import CALL_ENDED
from phoneagent.runtime.settings import CommonSettings
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import common_pb2, media_pb2, session_pb2, speech_pb2

log = logging.getLogger(__name__)
RESUME_TIMEOUT_S = 2.0  # a resume point read or write; never holds a call up longer
SETTINGS = AsrSettings
ERROR_EVERY_S = 1.0  # at most one error event per call, per distinct reason, per second
RESULT_WAIT_S = 60.0  # bound on waiting for one call's decodes when no caller frame comes
MAX_ERROR_REASONS = 16
# Caller frames a session may have waiting: 10 s of 20 ms frames. A replica starved of CPU for a
# moment, or the edge's replay after a takeover (a burst of up to 5 s), must not push the oldest
# frames - the start of what the caller says - out of the queue (it held 1 s before).
AUDIO_QUEUE_FRAMES = 500
# A line that sends nothing while the caller is silent (silence suppression) still ends the
# turn: after this long without a frame in the middle of an utterance, silence is fed in 20 ms
# frames until the turn is decided. The edge sends a frame every 20 ms while media flows, so a
# shorter gap is frames running late (a stalled process, a busy bus), not silence: filling it
# would cut the caller's words apart ("on Saturday" decoded as "on set or day"; it was 0.1 s).
SILENCE_FILL_AFTER_S = 0.5
FILL_FRAME_S = 0.02


@dataclass(frozen=True)
class Resume:
    """Where a session taken over from another replica picks up the call."""

    last_turn: int = 0  # turn id of the call's last final transcript
    speech_end_ns: int = 0  # end of that transcript's speech: audio before it was transcribed


class AsrCallSession:
    def __init__(
        self, svc: AsrService, claim: session_pb2.SessionClaim, resume: Resume | None = None
    ) -> None:
        self.svc = svc
        self.call_id = claim.call.meta.call_id
        s = svc.settings
        cfg = seg.SegmenterConfig(
            pre_roll_ms=s.pre_roll_ms,
            min_speech_ms=s.min_speech_ms,
            min_silence_ms=s.end_silence_ms,
            partial_interval_ms=s.partial_interval_ms,
            max_utterance_s=s.max_utterance_s,
            vad_reset_ms=s.vad_reset_ms,
            onset_lookback_ms=s.onset_lookback_ms,
        )
        assert svc.engine is not None
        self.asr = stream.AsrSession(
            svc.engine,
            call_id=self.call_id,
            config=cfg,
            partials=s.partials,
            last_turn=resume.last_turn if resume else 0,
            turn=svc.turn_decider,
        )
        # A taken-over session waits for the edge's replay of the audio it missed (see asr.resume):
        # the edge replays once this replica lists the call in a heartbeat.
        self.gate = FrameGate(
            resuming=resume is not None,
            wait_s=2 * svc.common.heartbeat_s + 0.5,
            skip_before_ns=resume.speech_end_ns if resume else 0,
        )
        self.sub: Subscription[Any] | None = None
        self._last_error: dict[str, float] = {}
        self._tasks = TaskOwner(f"asr:{self.call_id}")
        self._waiter: asyncio.Task[None] | None = None
        self._feeding = asyncio.Lock()  # frames and filled silence reach the session one at a time
        self._filler: asyncio.Task[None] | None = None
        self._last_t = 0.0  # stream time just after the last frame fed
        self._last_wall = 0.0  # when it was fed (monotonic)
        self._filled_until = 0.0  # stream time up to which silence was filled in since the last frame
        self.frames = 0  # caller frames processed
        self.missing = 0  # frames missing between the sequence numbers processed (lost on the way)
        self.filled_s = 0.0  # silence fed in because no frame came (see SILENCE_FILL_AFTER_S)
        self.late_after_fill = 0  # frames that came after silence was filled in for their time
        # The edge numbers a call's frames from 0; a taken-over session starts wherever the call is.
        self._last_seq: int | None = -1 if resume is None else None

    async def start(self) -> None:
        self.sub = await self.svc.bus.subscribe(
            subjects.audio_in(self.call_id),
            media_pb2.AudioFrame,
            self.on_frame,
            max_pending=AUDIO_QUEUE_FRAMES,
        )

    def meta(self, turn: int = 0) -> common_pb2.EventMeta:
        return new_meta(self.call_id, f"asr/{self.svc.replica}", turn_id=turn)

    async def on_frame(self, frame: media_pb2.AudioFrame, _: Delivery) -> None:
        for ready in self.gate.push(frame):
            await self.process(ready)

    def _count(self, seq: int) -> None:
        """Note a frame's sequence number; frames skipped in the sequence were lost before ASR."""
        self.frames += 1
        if self._last_seq is not None and seq > self._last_seq + 1:
            gap = seq - self._last_seq - 1
            self.missing += gap
            CALLER_AUDIO_LOST.labels(stage="asr_input").inc(gap)
            log.info("caller audio frames missing", extra={"call_id": self.call_id, "frames": gap})
        self._last_seq = seq if self._last_seq is None else max(self._last_seq, seq)

    async def process(self, frame: media_pb2.AudioFrame) -> None:
        self._count(frame.sequence)
        t = frame.capture_unix_ns / 1e9 if frame.capture_unix_ns else time.time()
        if self._filled_until and t < self._filled_until:
            # the line was not silent, the frames were late: the silence already fed stays in
            # the turn's audio, so say so (the fill wait is meant to make this rare)
            self.late_after_fill += 1
            if self.late_after_fill == 1:
                log.info("asr frames came after silence was filled in", extra={"call_id": self.call_id})
        self._filled_until = 0.0
        try:
            if len(frame.pcm) % 2:
                raise InvalidArgument("PCM16 audio must have an even number of bytes")
            pcm = np.frombuffer(frame.pcm, dtype="<i2")
            async with self._feeding:
                events = await self.asr.feed(pcm, t, rate=frame.sample_rate)
                self._last_t = t + len(pcm) / frame.sample_rate if frame.sample_rate > 0 else t
                self._last_wall = time.monotonic()
        except PhoneAgentError as exc:
            await self.report(exc)
            return
        await self._after_feed(events)

    async def _after_feed(self, events: list[stream.AsrEvent]) -> None:
        for ev in events:
            await self.publish(ev)
        if self.asr.pending and (self._waiter is None or self._waiter.done()):
            self._waiter = self._tasks.spawn(self._publish_when_ready(), "results")
        if self.asr.in_speech and (self._filler is None or self._filler.done()):
            self._filler = self._tasks.spawn(self._fill_silence(), "silence-fill")

    async def _fill_silence(self) -> None:
        """While an utterance is open and no frame comes, feed silence so the turn still ends."""
        silence = np.zeros(round(FILL_FRAME_S * stream.EXPECTED_RATE), dtype=np.int16)
        while self.asr.in_speech:
            gap = self._last_wall + SILENCE_FILL_AFTER_S - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)  # a frame arriving meanwhile moves the deadline on
                continue
            async with self._feeding:
                events = await self.asr.feed(silence, self._last_t)
                self._last_t += FILL_FRAME_S
                self._filled_until = self._last_t
                self.filled_s += FILL_FRAME_S
                self._last_wall = time.monotonic() - SILENCE_FILL_AFTER_S + FILL_FRAME_S
            for ev in events:
                await self.publish(ev)
            if self.asr.pending and (self._waiter is None or self._waiter.done()):
                self._waiter = self._tasks.spawn(self._publish_when_ready(), "results")

    async def _publish_when_ready(self) -> None:
        """Publish results as soon as their decodes finish. Frames also collect them, but the
        caller may fall silent on the line (no more frames) right after an utterance."""
        try:
            async with asyncio.timeout(RESULT_WAIT_S):
                while self.asr.pending:
                    for ev in await self.asr.drain():
                        await self.publish(ev)
        except TimeoutError:
            log.warning("asr results wait timed out", extra={"call_id": self.call_id})

    async def report(self, exc: PhoneAgentError) -> None:
        now = time.monotonic()
        if now - self._last_error.get(exc.message, -ERROR_EVERY_S) < ERROR_EVERY_S:
            return
        if len(self._last_error) >= MAX_ERROR_REASONS:
            self._last_error.clear()
        self._last_error[exc.message] = now
        await self.svc.bus.publish(subjects.asr_events(self.call_id), _error_event(exc.kind, exc.message))

    async def publish(self, ev: stream.AsrEvent) -> None:
        bus = self.svc.bus
        if isinstance(ev, stream.SpeechStarted):
            started = speech_pb2.SpeechStarted(meta=self.meta(ev.turn), speech_start_unix_ns=int(ev.t * 1e9))
            await bus.publish(
                subjects.asr_events(self.call_id),
                speech_pb2.AsrEvent(speech_started=started),
                lane=Lane.CONTROL,
            )
        elif isinstance(ev, stream.Partial):
            tr = speech_pb2.Transcript(
                meta=self.meta(ev.turn),
                final=False,
                text=ev.text,
                speech_start_unix_ns=int(ev.speech_start * 1e9),
                emitted_unix_ns=time.time_ns(),
                engine=self.svc.engine_name,
            )
            await bus.publish(subjects.asr_events(self.call_id), speech_pb2.AsrEvent(transcript=tr))
        elif isinstance(ev, stream.Preflight):
            # On the transcript subject, ahead of the final it foresees; no speech end, so a
            # replica taking the call over never skips audio whose final is not out yet.
            tr = speech_pb2.Transcript(
                meta=self.meta(ev.turn),
                final=False,
                preflight=True,
                text=ev.text,
                speech_start_unix_ns=int(ev.speech_start * 1e9),
                emitted_unix_ns=time.time_ns(),
                engine=self.svc.engine_name,
            )
            await bus.publish(subjects.transcript(self.call_id), tr)
        elif isinstance(ev, stream.Final):
            tr = speech_pb2.Transcript(
                meta=self.meta(ev.turn),
                final=True,
                text=ev.text,
                speech_start_unix_ns=int(ev.speech_start * 1e9),
                speech_end_unix_ns=int(ev.speech_end * 1e9),
                emitted_unix_ns=time.time_ns(),
                backchannel=ev.is_backchannel,
                engine=self.svc.engine_name,
            )
            if ev.endpoint:
                tr.endpoint_unix_ns = int(ev.endpoint * 1e9)
            if ev.result is not None:
                tr.language = ev.result.language or ""
                tr.compute_ms = round(ev.result.compute_s * 1000)
            # One trace per caller turn starts here: the LLM and TTS continue it.
            with telemetry.tracer().start_as_current_span(
                "asr.final",
                attributes={"call_id": self.call_id, "turn": ev.turn, "backchannel": ev.is_backchannel},
            ):
                await bus.publish(subjects.transcript(self.call_id), tr, trace=True)
            await self.svc.save_resume(self.call_id, tr)
        elif isinstance(ev, stream.AsrFailed):
            await bus.publish(subjects.asr_events(self.call_id), _error_event(ev.kind, ev.message))

    async def close(self, reason: str) -> None:
        if self.sub is not None:
            await self.svc.bus.unsubscribe(self.sub)
        await self._tasks.close(timeout=1.0)
        await self.asr.close()
        if reason == CALL_ENDED:  # where the call's recognition was is not kept beyond it
            await self.svc.forget_resume(self.call_id)


def _error_event(kind: ErrorKind, message: str) -> speech_pb2.AsrEvent:
    """An error for the call's asr subject (``message`` is safe text)."""
    err = common_pb2.Error(kind=kind.wire, retryable=kind.retryable, message=message, source="asr")  # type: ignore[arg-type]
    return speech_pb2.AsrEvent(error=err)


class AsrService(Service):
    name = "asr"
    stage = "asr"

    def __init__(self, common: CommonSettings, settings: AsrSettings) -> None:
        super().__init__(common)
        self.settings = settings
        self.engine: AsrEngine | None = None
        self.engine_name = settings.engine
        self.turn_decider: stream.TurnDecider | None = None

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for the configured engine, from the settings."""
        return engine_options(self.settings.engine, self.settings)

    async def setup(self) -> None:
        s = self.settings
        engine = create_engine(s.engine, **self.engine_options())
        await asyncio.to_thread(engine.load)
        self.engine = engine
        log.info("asr engine loaded", extra={"engine": s.engine, "model": s.model})
        if s.turn == "smart":
            model = SmartTurn()
            await asyncio.to_thread(model.load)
            self.turn_decider = stream.TurnDecider(model, s.turn_config())
            log.info("asr turn model loaded", extra={"model": "smart-turn-v3.2"})

    async def new_session(self, claim: session_pb2.SessionClaim, taken_over: bool) -> AsrCallSession:
        resume = await self._resume(claim.call.meta.call_id) if taken_over else None
        return AsrCallSession(self, claim, resume)

    async def save_resume(self, call_id: str, tr: speech_pb2.Transcript) -> None:
        """Note where this call's recognition is (its last final), for a replica taking it over."""
        point = {"turn": tr.meta.turn_id, "speech_end_ns": tr.speech_end_unix_ns}
        try:
            kv = await streams.asr_resume_kv(self.bus.jetstream(), ttl_s=self.common.call_state_ttl_s)
            await asyncio.wait_for(kv.put(call_id, json.dumps(point).encode()), RESUME_TIMEOUT_S)
        except Exception as exc:  # a takeover then falls back to the stored record copy
            log.warning("asr resume point not saved", extra={"call_id": call_id, "error": type(exc).__name__})

    async def forget_resume(self, call_id: str) -> None:
        """Purge the ended call's resume point (the bucket's TTL catches a missed one)."""
        try:
            kv = await streams.asr_resume_kv(self.bus.jetstream(), ttl_s=self.common.call_state_ttl_s)
        except Exception as exc:
            log.warning("resume point not purged", extra={"call_id": call_id, "error": type(exc).__name__})
            return
        await streams.forget_call(kv, call_id)

    async def _resume(self, call_id: str) -> Resume:
        """Where the call's last final transcript left off: the point the previous owner saved,
        else the transcript's redacted copy in the calls stream (turn id and speech end only)."""
        try:
            kv = await streams.asr_resume_kv(self.bus.jetstream(), ttl_s=self.common.call_state_ttl_s)
            entry = await asyncio.wait_for(kv.get(call_id), RESUME_TIMEOUT_S)
            point = json.loads(entry.value or b"{}")
            return Resume(
                last_turn=max(0, int(point["turn"])), speech_end_ns=max(0, int(point["speech_end_ns"]))
            )
        except Exception:  # none saved (or unreadable): try the stored copy
            pass
        try:
            subject = subjects.record(call_id, "transcript")
            msg = await self.bus.jetstream().get_last_msg(subjects.CALLS_STREAM, subject)
            last = speech_pb2.Transcript()
            last.ParseFromString(msg.data or b"")
        except Exception:  # no transcript yet, or the stream is unavailable: start afresh
            return Resume()
        return Resume(last_turn=max(0, last.meta.turn_id), speech_end_ns=max(0, last.speech_end_unix_ns))

    async def teardown(self) -> None:
        if self.engine is not None:
            self.engine.close()

    def status(self) -> dict[str, object]:
        return {"model": f"{self.settings.engine}:{self.settings.model}"}
