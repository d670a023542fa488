"""One call's speech recognition: endpointing plus decoding, off the event loop.

:class:`AsrSession` feeds caller frames through the :class:`~phoneagent.asr.segmenter.Segmenter`
and decodes utterances with an :class:`~phoneagent.asr.engines.base.AsrEngine` in a worker
thread, so the event loop is never blocked. ``feed`` returns at once with the events that
are ready: ``SpeechStarted`` immediately, and ``Partial``/``Final`` results of decodes
that finished since the previous call (frames arrive every 20 ms, so a result waits at
most one frame). ``drain`` waits for decodes in flight; ``flush`` also closes an open
utterance at the end of the call. Finals come out in turn order. Partials are skipped
whenever the engine is busy or this call has a final or a pause decode pending, and dropped
once their turn's final is out.

With a :class:`TurnDecider` the end of a turn is decided when the caller pauses (see
:mod:`phoneagent.asr.turn`): at the pause the audio model scores the utterance and the engine
decodes it, both in worker threads; the decision sets how long the pause may last. If the
decision says the turn is likely over before that silence has passed, a :class:`Preflight`
carries the decoded text at once. When the silence is confirmed the final reuses that decode
(it covers the same speech), so the final costs no second decode. If the caller speaks again
first, the pause's decode (when finished) becomes the turn's stable prefix: later decodes of
the turn - the next pause's, the final's - cover only the audio after it, and their text is
joined to it; the turn's final (same turn id) comes later. Without
one, a fixed silence (``min_silence_ms``) ends the turn and the final is decoded after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from phoneagent.asr import segmenter as seg
from phoneagent.asr.audio_check import EXPECTED_RATE, check_audio
from phoneagent.asr.backchannel import BackchannelConfig, is_backchannel
from phoneagent.asr.engines.base import AsrEngine, TranscriptResult
from phoneagent.asr.events import AsrEvent, AsrFailed, Final, Partial, Preflight, SpeechStarted
from phoneagent.asr.turn import Decision, TurnConfig, decide, text_state
from phoneagent.asr.vad import SileroVad, SpeechDetector
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.metrics import ASR_FINAL_LATENCY, ASR_RTF, QUEUE_DEPTH
from phoneagent.runtime.redact import redact_text

__all__ = [
    "AsrEvent",
    "AsrFailed",
    "AsrSession",
    "Final",
    "Partial",
    "Preflight",
    "SpeechStarted",
    "TurnDecider",
]

log = logging.getLogger(__name__)
# Utterances of all this process's calls waiting for the engine or being decoded (finals from
# the end of speech until the decode returns): rises when the CPU cannot keep up.
DECODE_QUEUE = QUEUE_DEPTH.labels(queue="asr:decode")
CLOSE_TIMEOUT_S = 2.0  # how long close() waits for cancelled decode tasks
PREFIX_MARGIN_S = 0.05  # silence after a pause's speech end that its stable prefix still covers


class TurnScorer(Protocol):
    """The audio end-of-turn model (:class:`phoneagent.asr.turn_model.SmartTurn`)."""

    def score(self, pcm: np.ndarray) -> float: ...


@dataclass(frozen=True)
class TurnDecider:
    """What decides the end of a turn: the audio model (None: words and silence only) and the waits."""

    model: TurnScorer | None
    config: TurnConfig = field(default_factory=TurnConfig)


@dataclass(frozen=True)
class _Prefix:
    """The stable start of an open turn: the decode of its audio up to a pause after which the
    caller went on (``end``: samples of the utterance audio it covers)."""

    result: TranscriptResult
    end: int


def _tail(pcm: np.ndarray, prefix: _Prefix | None) -> np.ndarray:
    return pcm[prefix.end :] if prefix is not None and prefix.end < len(pcm) else pcm


def _join(prefix: _Prefix | None, tail: TranscriptResult) -> TranscriptResult:
    """The prefix's words followed by the tail's (times moved to the utterance audio)."""
    if prefix is None:
        return tail
    head = prefix.result.text.strip().rstrip(".\u2026").rstrip()
    offset = prefix.end / EXPECTED_RATE
    words = prefix.result.words + tuple(
        dataclasses.replace(w, start=w.start + offset, end=w.end + offset) for w in tail.words
    )
    return dataclasses.replace(tail, text=f"{head} {tail.text.strip()}".strip(), words=words)


@dataclass
class _Pause:
    """A pause being judged: its speech end names it; ``task`` scores and decodes the turn so far."""

    turn: int
    event: seg.PauseDue
    task: asyncio.Task[tuple[Decision, TranscriptResult | None]]
    prefix: _Prefix | None
    decided: Decision | None = None
    preflight: bool = False


@dataclass
class SessionStats:
    finals: int = 0
    partials: int = 0
    partials_skipped: int = 0
    preflights: int = 0
    preflights_superseded: int = 0  # the caller spoke again after a preflight
    finals_reused: int = 0  # finals that took the pause's decode instead of decoding again
    prefixes: int = 0  # pauses whose decode became the stable start of their turn
    last_final_decode_s: float = 0.0  # audio the last final's own decode covered (0: reused)
    last_decision: Decision | None = None
    last_final_latency_s: float = 0.0
    last_rtf: float = 0.0


class AsrSession:
    """Streaming ASR for one call. Not thread-safe: use it from one event loop task."""

    def __init__(
        self,
        engine: AsrEngine,
        *,
        call_id: str = "",
        detector: SpeechDetector | None = None,
        config: seg.SegmenterConfig | None = None,
        backchannel: BackchannelConfig | None = None,
        partials: bool = False,
        last_turn: int = 0,
        turn: TurnDecider | None = None,
    ) -> None:
        """``last_turn``: the call's last turn id so far (a session taken over from another
        replica continues the numbering instead of repeating turn ids)."""
        if last_turn < 0:
            raise ValueError("last_turn must not be negative")
        self.engine = engine
        self.call_id = call_id
        self.partials = partials and (config is None or config.partial_interval_ms > 0)
        self.stats = SessionStats()
        self.turn_decider = turn
        if turn is not None:
            turn.config.validate()
            base = config or seg.SegmenterConfig()
            # the segmenter asks at probe_ms; until a decision comes the pause may last max_wait_ms
            config = dataclasses.replace(
                base, turn_probe_ms=turn.config.probe_ms, min_silence_ms=turn.config.max_wait_ms
            )
        self._segmenter = seg.Segmenter(detector or SileroVad(), config)
        self._pause: _Pause | None = None
        self._prefix: _Prefix | None = None  # the open turn's stable start (decoded once)
        self._partial_text = ""  # the open turn's latest partial
        self._backchannel = backchannel or BackchannelConfig()
        self._turn = last_turn
        self._last_final_turn = last_turn
        self._finals: deque[asyncio.Task[AsrEvent]] = deque()
        self._partial: asyncio.Task[Partial | None] | None = None
        self._decode_lock = asyncio.Lock()

    @property
    def in_speech(self) -> bool:
        return self._segmenter.in_speech

    @property
    def pending(self) -> bool:
        """Decodes are in flight (their events come from a later ``feed`` or ``drain``)."""
        return bool(self._finals) or self._partial is not None or self._pause_pending

    @property
    def _pause_pending(self) -> bool:
        return self._pause is not None and self._pause.decided is None

    async def feed(self, frame: np.ndarray, t: float, *, rate: int = EXPECTED_RATE) -> list[AsrEvent]:
        """Add one frame (first sample at stream time ``t``); returns the events now ready.

        Raises :class:`PhoneAgentError` (INVALID_ARGUMENT) for bad audio; the frame is
        dropped and the session stays usable.
        """
        pcm = check_audio(frame, rate)
        events: list[AsrEvent] = []
        started = len(self._finals), self._partial
        for event in self._segmenter.feed(pcm, t):
            events.extend(self._handle(event))
        if started != (len(self._finals), self._partial):
            await asyncio.sleep(0)  # let a new decode task hand its audio to the worker thread now
        events.extend(self._collect())
        return events

    async def drain(self) -> list[AsrEvent]:
        """Wait for decodes in flight and return their events (bound it with ``asyncio.timeout``)."""
        pending: list[asyncio.Task[Any]] = [*self._finals, *([self._partial] if self._partial else [])]
        if self._pause is not None and self._pause.decided is None:
            pending.append(self._pause.task)
        if pending:
            await asyncio.wait(pending)
        return self._collect()

    async def flush(self, t: float) -> list[AsrEvent]:
        """End of the call's audio at time ``t``: close an open utterance and wait for results."""
        for event in self._segmenter.flush(t):
            self._handle(event)
        return await self.drain()

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Cancel decodes in flight, waiting at most ``timeout`` for them to end; a worker thread
        already decoding finishes on its own."""
        tasks: list[asyncio.Task[Any]] = [*self._finals, *([self._partial] if self._partial else [])]
        if self._pause is not None:
            tasks.append(self._pause.task)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning(
                    "asr decodes still running after cancel",
                    extra={"call_id": self.call_id, "tasks": len(pending), "timeout_s": timeout},
                )
        self._finals.clear()
        self._partial = None
        self._pause = None
        self._segmenter.reset()

    def _handle(self, event: seg.SegmentEvent) -> list[AsrEvent]:
        if isinstance(event, seg.SpeechStarted):
            self._turn += 1
            self._partial_text = ""
            self._prefix = None
            return [SpeechStarted(turn=self._turn, t=event.t, detected_at=event.detected_at)]
        if isinstance(event, seg.PartialDue):
            self._maybe_partial(event)
            return []
        if isinstance(event, seg.PauseDue):
            self._start_pause(event)
            return []
        turn = self._turn
        if event.continued:
            self._turn += 1  # cut at the length limit while the caller talks on: the rest is a new turn
        pause, self._pause = self._pause, None
        if pause is not None and pause.event.speech_end != event.speech_end:
            # speech came after that pause: its decode misses the end, but can start it
            if pause.task.done() and not pause.task.cancelled():
                self._keep_prefix(pause, pause.task.result()[1])
            pause.task.cancel()
            pause = None
        prefix, self._prefix = self._prefix, None
        if event.continued:
            prefix = None  # a length cut: the audio starts afresh
        task = asyncio.create_task(self._final(event, turn, time.perf_counter(), pause, prefix))
        DECODE_QUEUE.inc()
        task.add_done_callback(_leave_decode_queue)  # also when cancelled before it ran
        self._finals.append(task)
        return []

    def _maybe_partial(self, event: seg.PartialDue) -> None:
        if not self.partials:
            return
        idle = (
            self._partial is None
            and not self._finals
            and self._pause is None
            and not self._decode_lock.locked()
        )
        if not idle or self.engine.busy():
            self.stats.partials_skipped += 1
            return
        self._partial = asyncio.create_task(self._decode_partial(event, self._turn))

    async def _decode_partial(self, event: seg.PartialDue, turn: int) -> Partial | None:
        async with self._decode_lock:
            try:
                result = await asyncio.to_thread(self.engine.transcribe, event.pcm, partial=True)
            except Exception:  # a failed preview is not worth an error event; the final will tell
                log.warning("asr partial failed", extra={"call_id": self.call_id, "turn": turn})
                return None
        return Partial(turn=turn, text=result.text, speech_start=event.speech_start, t=event.t)

    def _start_pause(self, event: seg.PauseDue) -> None:
        assert self.turn_decider is not None
        if self._pause is not None:
            self._pause.task.cancel()
        task = asyncio.create_task(self._judge(event, self._partial_text, self._prefix))
        self._pause = _Pause(self._turn, event, task, self._prefix)

    async def _judge(
        self, event: seg.PauseDue, partial_text: str, prefix: _Prefix | None
    ) -> tuple[Decision, TranscriptResult | None]:
        """Score the pause's audio (all of it) and decode the turn so far (after its stable
        prefix), both in worker threads at once."""
        assert self.turn_decider is not None
        model = self.turn_decider.model
        scoring = asyncio.create_task(asyncio.to_thread(model.score, event.pcm)) if model else None
        result: TranscriptResult | None = None
        try:
            async with self._decode_lock:
                try:
                    tail = await asyncio.to_thread(
                        self.engine.transcribe, _tail(event.pcm, prefix), partial=False
                    )
                    result = _join(prefix, tail)
                except Exception:  # the final decodes again and reports a failure
                    log.warning(
                        "asr pause decode failed", extra={"call_id": self.call_id, "turn": self._turn}
                    )
            score: float | None = None
            if scoring is not None:
                try:
                    score = await scoring
                except Exception:  # words and silence still decide
                    log.warning("turn model failed", extra={"call_id": self.call_id, "turn": self._turn})
        finally:
            if scoring is not None and not scoring.done():
                scoring.cancel()  # a score already in its worker thread finishes there, unused
        text = result.text if result is not None else partial_text
        return decide(score, text_state(text), self.turn_decider.config), result

    def _settle_pause(self) -> list[AsrEvent]:
        """Apply a finished pause judgement: the pause's wait, and a preflight when the turn is
        likely over and the silence that confirms it has not passed yet."""
        pause = self._pause
        if pause is None or pause.decided is not None or not pause.task.done():
            return []
        if pause.task.cancelled():
            self._pause = None
            return []
        decision, result = pause.task.result()
        pause.decided = decision
        self.stats.last_decision = decision
        if not self._segmenter.set_end_wait(pause.event.speech_end, decision.wait_s):
            self._pause = None  # the caller spoke again: this judgement is stale
            self._keep_prefix(pause, result)
            return []
        confirmed = self._segmenter.silence_s >= decision.wait_s  # the final follows at once
        if confirmed or not decision.likely_over or result is None or not result.text.strip():
            return []
        pause.preflight = True
        self.stats.preflights += 1
        ev = pause.event
        return [Preflight(pause.turn, result.text, ev.speech_start, ev.speech_end, decision)]

    def _drop_stale_pause(self) -> None:
        pause = self._pause
        if pause is None or not self._segmenter.in_speech:
            return
        if pause.event.speech_end != self._segmenter.speech_end:
            self.stats.preflights_superseded += pause.preflight
            self._pause = None
            if pause.task.done() and not pause.task.cancelled():
                self._keep_prefix(pause, pause.task.result()[1])
            else:
                pause.task.cancel()  # a decode already in its worker thread finishes there, unused

    def _keep_prefix(self, pause: _Pause, result: TranscriptResult | None) -> None:
        """The caller went on after ``pause``: its decode becomes the turn's stable start, so
        later decodes of the turn (the final's above all) cover only what came after it."""
        ev = pause.event
        if result is None or not result.text.strip() or pause.turn != self._turn:
            return
        start_t = ev.t - len(ev.pcm) / EXPECTED_RATE
        end = min(len(ev.pcm), round((ev.speech_end + PREFIX_MARGIN_S - start_t) * EXPECTED_RATE))
        if self._prefix is None or end > self._prefix.end:
            self._prefix = _Prefix(result, end)
            self.stats.prefixes += 1

    async def _final(
        self,
        utt: seg.Utterance,
        turn: int,
        endpoint_wall: float,
        pause: _Pause | None = None,
        prefix: _Prefix | None = None,
    ) -> AsrEvent:
        if pause is not None:
            _, result = await pause.task  # never raises: a failed decode is None
            if result is not None:
                self.stats.finals_reused += 1
                self.stats.last_final_decode_s = 0.0
                return self._make_final(utt, turn, result, time.perf_counter() - endpoint_wall)
        async with self._decode_lock:
            try:
                pcm = _tail(utt.pcm, prefix)
                self.stats.last_final_decode_s = len(pcm) / EXPECTED_RATE
                result = _join(prefix, await asyncio.to_thread(self.engine.transcribe, pcm, partial=False))
            except Exception as exc:
                err = (
                    exc
                    if isinstance(exc, PhoneAgentError)
                    else PhoneAgentError(ErrorKind.INTERNAL, "speech recognition failed")
                )
                log.warning(
                    "asr final failed",
                    extra={
                        "call_id": self.call_id,
                        "turn": turn,
                        "kind": err.kind.name,
                        "error": type(exc).__name__,
                    },
                )
                return AsrFailed(turn=turn, kind=err.kind, message=err.message)
        waited = time.perf_counter() - endpoint_wall
        return self._make_final(utt, turn, result, waited)

    def _make_final(self, utt: seg.Utterance, turn: int, result: TranscriptResult, waited: float) -> Final:
        latency = (utt.ended_at - utt.speech_end) + waited
        ASR_FINAL_LATENCY.labels(engine=self.engine.name).observe(latency)
        ASR_RTF.labels(engine=self.engine.name).observe(result.real_time_factor)
        self.stats.last_final_latency_s = latency
        self.stats.last_rtf = result.real_time_factor
        backchannel = is_backchannel(result.text, utt.speech_end - utt.speech_start, self._backchannel)
        log.info(
            "asr final",
            extra={
                "call_id": self.call_id,
                "turn": turn,
                "chars": len(result.text),
                "latency_ms": round(latency * 1000),
                "rtf": round(result.real_time_factor, 3),
                "backchannel": backchannel,
                "forced": utt.forced,
                "start_sample": utt.start_sample,
                "onset_sample": utt.onset_sample,
                "audio_ms": round(len(utt.pcm) * 1000 / EXPECTED_RATE),
            },
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "asr final text",
                extra={"call_id": self.call_id, "turn": turn, "text": redact_text(result.text)},
            )
        return Final(
            turn=turn,
            text=result.text,
            speech_start=utt.speech_start,
            speech_end=utt.speech_end,
            final_emitted=utt.ended_at + waited,
            is_backchannel=backchannel,
            forced=utt.forced,
            result=result,
            endpoint=utt.ended_at,
            start_sample=utt.start_sample,
            onset_sample=utt.onset_sample,
        )

    def _collect(self) -> list[AsrEvent]:
        events: list[AsrEvent] = []
        if self._partial is not None and self._partial.done():
            partial = None if self._partial.cancelled() else self._partial.result()
            self._partial = None
            if partial is not None and partial.turn > self._last_final_turn and partial.text:
                self.stats.partials += 1
                if partial.turn == self._turn:
                    self._partial_text = partial.text
                events.append(partial)
        self._drop_stale_pause()
        events.extend(self._settle_pause())
        while self._finals and self._finals[0].done():
            task = self._finals.popleft()
            if task.cancelled():
                continue
            event = task.result()
            self._last_final_turn = max(self._last_final_turn, event.turn)
            self.stats.finals += isinstance(event, Final)
            events.append(event)
        return events


def _leave_decode_queue(_: asyncio.Task[AsrEvent]) -> None:
    DECODE_QUEUE.dec()
