"""One call's speech recognition: endpointing plus decoding, off the event loop.

:class:`AsrSession` feeds caller frames through the :class:`~phoneagent.asr.segmenter.Segmenter`
and decodes utterances with an :class:`~phoneagent.asr.engines.base.AsrEngine` in a worker
thread, so the event loop is never blocked. ``feed`` returns at once with the events that
are ready: ``SpeechStarted`` immediately, and ``Partial``/``Final`` results of decodes
that finished since the previous call (frames arrive every 20 ms, so a result waits at
most one frame). ``drain`` waits for decodes in flight; ``flush`` also closes an open
utterance at the end of the call. Finals come out in turn order. Partials are off by
default (a CPU re-decoding every 600 ms costs a large share of a core); when on, they are
skipped whenever a decode is already running, and dropped once their turn's final is out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from phoneagent.asr import segmenter as seg
from phoneagent.asr.audio_check import EXPECTED_RATE, check_audio
from phoneagent.asr.backchannel import BackchannelConfig, is_backchannel
from phoneagent.asr.engines.base import AsrEngine, TranscriptResult
from phoneagent.asr.vad import SileroVad, SpeechDetector
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.metrics import ASR_FINAL_LATENCY, ASR_RTF, QUEUE_DEPTH
from phoneagent.runtime.redact import redact_text

log = logging.getLogger(__name__)
# Utterances of all this process's calls waiting for the engine or being decoded (finals from
# the end of speech until the decode returns): rises when the CPU cannot keep up.
DECODE_QUEUE = QUEUE_DEPTH.labels(queue="asr:decode")
CLOSE_TIMEOUT_S = 2.0  # how long close() waits for cancelled decode tasks


@dataclass(frozen=True)
class SpeechStarted:
    turn: int
    t: float
    detected_at: float


@dataclass(frozen=True)
class Partial:
    turn: int
    text: str
    speech_start: float
    t: float


@dataclass(frozen=True)
class Final:
    turn: int
    text: str
    speech_start: float
    speech_end: float
    final_emitted: float
    is_backchannel: bool
    forced: bool = False
    result: TranscriptResult | None = field(default=None, compare=False, repr=False)
    endpoint: float = 0.0  # when end of speech was declared (audio clock, Unix seconds)
    start_sample: int = 0  # stream position (16 kHz samples fed to the session) of the decoded audio
    onset_sample: int = 0  # stream position where the VAD heard the speech start


@dataclass(frozen=True)
class AsrFailed:
    """A final decode failed; ``message`` is safe to send on the bus."""

    turn: int
    kind: ErrorKind
    message: str


AsrEvent = SpeechStarted | Partial | Final | AsrFailed


@dataclass
class SessionStats:
    finals: int = 0
    partials: int = 0
    partials_skipped: int = 0
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
    ) -> None:
        """``last_turn``: the call's last turn id so far (a session taken over from another
        replica continues the numbering instead of repeating turn ids)."""
        if last_turn < 0:
            raise ValueError("last_turn must not be negative")
        self.engine = engine
        self.call_id = call_id
        self.partials = partials and (config is None or config.partial_interval_ms > 0)
        self.stats = SessionStats()
        self._segmenter = seg.Segmenter(detector or SileroVad(), config)
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
        return bool(self._finals) or self._partial is not None

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
        pending = [*self._finals, *([self._partial] if self._partial else [])]
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
        tasks = [*self._finals, *([self._partial] if self._partial else [])]
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
        self._segmenter.reset()

    def _handle(self, event: seg.SegmentEvent) -> list[AsrEvent]:
        if isinstance(event, seg.SpeechStarted):
            self._turn += 1
            return [SpeechStarted(turn=self._turn, t=event.t, detected_at=event.detected_at)]
        if isinstance(event, seg.PartialDue):
            self._maybe_partial(event)
            return []
        turn = self._turn
        if event.continued:
            self._turn += 1  # cut at the length limit while the caller talks on: the rest is a new turn
        task = asyncio.create_task(self._final(event, turn, time.perf_counter()))
        DECODE_QUEUE.inc()
        task.add_done_callback(_leave_decode_queue)  # also when cancelled before it ran
        self._finals.append(task)
        return []

    def _maybe_partial(self, event: seg.PartialDue) -> None:
        if not self.partials:
            return
        idle = self._partial is None and not self._finals and not self._decode_lock.locked()
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

    async def _final(self, utt: seg.Utterance, turn: int, endpoint_wall: float) -> AsrEvent:
        async with self._decode_lock:
            try:
                result = await asyncio.to_thread(self.engine.transcribe, utt.pcm, partial=False)
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
                events.append(partial)
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
