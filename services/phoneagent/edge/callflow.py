"""One call at the edge, independent of the transport (SIP/RTP or WebRTC).

Every 20 ms (one :class:`~phoneagent.edge.media.pacer.Pacer` tick) the call pulls one
frame of caller audio from its transport, denoises it (RNNoise, when the call's config asks),
runs the barge-in VAD on it, resamples it to 16 kHz and publishes it for ASR; and it sends one
frame of agent speech (or silence) to the transport. Speech chunks from TTS queue per
generation; control events (barge-in, cancel, hangup, transfer, DTMF) arrive on the call's
control lane. A transfer (blind, or warm
with its second leg to the human) is carried out only when it carries policy's signed approval
for this call and this target, each approval once (:mod:`phoneagent.runtime.approvals`); any
other is refused with a failed TransferResult and counted.

Barge-in: when the VAD confirms caller speech while the agent speaks, playout pauses at
once (within one tick). If the caller has spoken for ``barge_in_long_ms`` (speech only, not
the VAD's hangover after it: longer than ASR would still call a backchannel) the generation
is cancelled: queued audio is discarded and a BargeIn event reports what was played. Shorter
speech waits for ASR's verdict on it: a final transcript marked backchannel ("mm-hmm"), or
one with no words at all (a cough, a door), resumes the agent where it paused; any other
final cancels the generation with a BargeIn. When no verdict has come
``backchannel_wait_ms`` after the speech ended, the agent resumes, and a verdict that comes
later still decides (a real turn then interrupts the resumed reply).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from phoneagent.audio.denoise import Denoiser
from phoneagent.audio.resample import StreamResampler
from phoneagent.edge.amd import amd_gate_for
from phoneagent.edge.call_transport import CallTransport
from phoneagent.edge.media.pacer import Pacer
from phoneagent.edge.media.vad import BargeInVad, VadConfig, VadEventKind
from phoneagent.edge.playout import PlayoutRecords
from phoneagent.edge.replay import AudioReplay
from phoneagent.runtime import approvals, metrics, subjects, telemetry
from phoneagent.runtime.approvals import NotApproved, Verifier
from phoneagent.runtime.bus import Bus, Delivery, Lane, Subscription
from phoneagent.runtime.enums import enum_name
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.numbers import stored_call
from phoneagent.runtime.sessions import claim_session
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2, speech_pb2

log = logging.getLogger(__name__)
ASR_RATE = 16000
FRAME_MS = 20
MAX_TRANSFER_TARGET_CHARS = 256


@dataclass
class EdgeCallConfig:
    barge_in_long_ms: int = 1600  # speech this long is a barge-in without waiting for ASR
    backchannel_wait_ms: int = 1200  # after short speech ends, how long playout waits for ASR's verdict
    min_speech_ms: int = 200
    max_duration_s: float = 3600.0
    denoise: bool = False  # RNNoise on the caller's audio before the barge-in VAD and ASR
    stages: tuple[str, ...] = subjects.STAGES
    # Policy's public keys: a Transfer is carried out only with its signed approval.
    approvals: Verifier = field(default_factory=Verifier)


@dataclass
class _Chunk:
    generation: int
    pcm: np.ndarray
    sentence_seq: int
    text_end: int
    last_in_generation: bool
    received: float


class EdgeCall:
    def __init__(
        self,
        bus: Bus,
        started: call_pb2.CallStarted,
        transport: CallTransport,
        config: EdgeCallConfig | None = None,
    ) -> None:
        self.bus = bus
        self.started = started
        self.call_id = started.meta.call_id
        self.transport = transport
        self.config = config or EdgeCallConfig()
        self.rate = transport.sample_rate
        self.frame = self.rate * FRAME_MS // 1000
        self.tasks = TaskOwner(f"edge:{self.call_id}")
        self.subs: list[Subscription[Any]] = []
        self.to_asr = StreamResampler(self.rate, ASR_RATE)
        self.vad = BargeInVad(VadConfig(sample_rate=self.rate, min_speech_ms=self.config.min_speech_ms))
        self.denoiser = Denoiser(self.rate) if self.config.denoise else None
        self.queue: collections.deque[_Chunk] = collections.deque()
        self.floor = 0  # generations below are cancelled
        self.playing: int | None = None  # generation being played
        self.played_ms = 0
        self.heard = (0, 0)  # (sentence_seq, text_end) of the last chunk played
        self.paused_since: float | None = None
        self.caller_speaking = False
        self.speech_ended_at: float | None = None  # caller stopped speaking (monotonic)
        self.speech_ended_unix_ns = 0  # the same moment, wall clock (for the call records)
        self.verdict_for: int | None = None  # generation paused by short speech, until ASR's verdict
        self._stop_pending: float | None = None  # speech confirmed (monotonic); playout not yet stopped
        self.seq = 0
        # Where the barge-in VAD heard each recent caller talk spurt start, as a position in the
        # audio published to ASR (16 kHz samples): compared with ASR's own onsets, it tells a
        # test or an operator whether a turn's first words were lost before or inside ASR.
        self.onsets: collections.deque[int] = collections.deque(maxlen=64)
        self.ended = asyncio.Event()
        self.end_reason: int = call_pb2.END_REASON_UNSPECIFIED
        self.started_at = time.monotonic()
        self._first_packet_pending: dict[int, float] = {}
        self._mouth_pending: dict[int, float] = {}
        self._counted = False  # ACTIVE_CALLS was incremented (start() completed)
        self._end_task: asyncio.Future[None] | None = None  # publishes CallEnded, then releases
        self.transferring = False  # a transfer is in progress (one at a time)
        self.used_transfers: set[str] = set()  # decision ids of approvals used (each once)
        self.holding = False  # agent playout paused while a warm transfer holds the caller
        self.peer_hold = False  # the caller put the call on hold (re-INVITE): playout waits
        self.amd = amd_gate_for(self)  # outbound with an ``amd`` label: hold playout for a verdict
        self.replay = AudioReplay(bus, self.call_id)  # recent caller audio, for a new ASR owner
        self.playouts = PlayoutRecords(bus, self.call_id)  # what each reply's caller heard

    # --- lifecycle ------------------------------------------------------------------------------
    def meta(self, generation: int = 0) -> common_pb2.EventMeta:
        return new_meta(self.call_id, "edge", generation_id=generation)

    async def start(self) -> None:
        """Publish the call, claim a session in every stage, subscribe. Raises when a stage is missing."""
        self.started.meta.ts_unix_ns = self.started.meta.ts_unix_ns or time.time_ns()
        self.started.playout_rate = self.rate  # TTS renders speech at the rate this transport plays
        # The lifecycle subject is stored (PA_CALLS): the parties go masked; the claims carry them whole.
        stored = call_pb2.CallEvent(started=stored_call(self.started))
        await self.bus.publish(subjects.lifecycle(self.call_id), stored, lane=Lane.CONTROL)
        claims = await asyncio.gather(
            *(claim_session(self.bus, stage, self.started) for stage in self.config.stages)
        )
        if "asr" in self.config.stages:
            self.replay.owner = claims[self.config.stages.index("asr")].replica_id
            self.subs.append(await self.replay.watch())
        self.subs.append(
            await self.bus.subscribe(
                subjects.speech(self.call_id), media_pb2.SpeechChunk, self.on_speech, max_pending=3000
            )
        )
        self.subs.append(
            await self.bus.subscribe(
                subjects.control(self.call_id), control_pb2.ControlEvent, self.on_control, lane=Lane.CONTROL
            )
        )
        self.subs.append(
            await self.bus.subscribe(
                subjects.transcript(self.call_id),
                speech_pb2.Transcript,
                self.on_transcript,
                lane=Lane.CONTROL,
            )
        )
        metrics.ACTIVE_CALLS.labels(transport=self.transport.name).inc()
        self._counted = True

    async def answered(self, codec: str = "") -> None:
        """The call is up on ``codec`` (the one negotiated; CallStarted's for inbound calls)."""
        answered = call_pb2.CallAnswered(meta=self.meta(), codec=codec or self.started.codec)
        await self.bus.publish(
            subjects.lifecycle(self.call_id),
            call_pb2.CallEvent(answered=answered),
            lane=Lane.CONTROL,
        )
        self.tasks.spawn(self._media_loop(), "media")

    async def end(self, reason: int, detail: str = "") -> None:
        """The call is over (either side): publish CallEnded once and release everything.

        A second caller (the page's hang-up racing a drain, the peer's BYE racing max duration)
        returns once the first has published and released, so whoever waits on end() knows
        the call is over on the bus too."""
        # In a task of its own: end() may run inside one of the call's own subscription workers
        # or tasks, which the release cancels (a task must not wait for itself).
        if self._end_task is None:
            self.ended.set()
            self.end_reason = reason
            self._end_task = asyncio.ensure_future(self._announce_end(reason, detail))
        await asyncio.shield(self._end_task)

    async def _announce_end(self, reason: int, detail: str) -> None:
        duration = int((time.monotonic() - self.started_at) * 1000)
        code = cast(call_pb2.EndReason, reason)  # an EndReason value, as every caller passes
        ended = call_pb2.CallEnded(meta=self.meta(), reason=code, detail=detail[:120], duration_ms=duration)
        try:
            await self.bus.publish(
                subjects.lifecycle(self.call_id), call_pb2.CallEvent(ended=ended), lane=Lane.CONTROL
            )
        except PhoneAgentError:
            log.warning("call end not published", extra={"call_id": self.call_id})
        if self._counted:
            metrics.ACTIVE_CALLS.labels(transport=self.transport.name).dec()
        direction = "outbound" if self.started.direction == call_pb2.DIRECTION_OUTBOUND else "inbound"
        metrics.CALLS_TOTAL.labels(
            direction=direction, reason=enum_name(call_pb2.EndReason, reason).lower()
        ).inc()
        await self._release()

    async def _release(self) -> None:
        for sub in self.subs:
            await self.bus.unsubscribe(sub)
        await self.tasks.close(timeout=2.0)
        if self.denoiser is not None:
            self.denoiser.close()

    # --- media -----------------------------------------------------------------------------------
    async def _media_loop(self) -> None:
        pacer = Pacer(FRAME_MS / 1000)
        while not self.ended.is_set():
            await pacer.next_tick()
            try:
                await self._tick()
            except PhoneAgentError as exc:
                log.warning("media tick failed", extra={"call_id": self.call_id, "error_kind": exc.kind.name})
            if time.monotonic() - self.started_at > self.config.max_duration_s:
                await self.transport.hangup("max duration")
                await self.end(call_pb2.END_REASON_MAX_DURATION, "max duration")

    async def _tick(self) -> None:
        frame = self.transport.pull_caller_frame()
        if frame is not None:
            await self._caller_frame(frame)
        await self._play_one()

    async def _caller_frame(self, frame: np.ndarray) -> None:
        if self.amd is not None and not self.amd.detector.finished:
            await self.amd.on_frame(frame)
            if self.ended.is_set():
                return
        if self.denoiser is not None:
            # RNNoise costs ~1 ms a frame: on a worker thread (it releases the GIL), so one call's
            # denoising never holds up the other calls' playout ticks. AMD above hears the raw line.
            frame = await asyncio.to_thread(self.denoiser.process, frame)
        event = self.vad.process(frame)
        now = time.monotonic()
        if event is not None:
            if event.kind is VadEventKind.STARTED or (
                event.kind is VadEventKind.CONFIRMED and event.at_ms - event.onset_ms <= FRAME_MS
            ):
                self._note_onset(event.onset_ms)
            if event.kind is VadEventKind.CONFIRMED:
                self.caller_speaking = True
                if self.playing is not None and self.paused_since is None:
                    self.paused_since = self._stop_pending = now  # stop talking over the caller at once
                    self.verdict_for = self.playing
            elif event.kind is VadEventKind.ENDED:
                self.caller_speaking = False
                self.speech_ended_at = now
                self.speech_ended_unix_ns = time.time_ns()
        if (
            self.paused_since is not None
            and self.caller_speaking
            and self.vad.speech_ms >= self.config.barge_in_long_ms
        ):
            await self.barge_in("long speech")
        elif (
            self.paused_since is not None
            and not self.caller_speaking
            and self.speech_ended_at
            and (now - self.speech_ended_at) * 1000 >= self.config.backchannel_wait_ms
        ):
            self.paused_since = None  # no verdict yet: carry on speaking; a late one still decides
        pcm16 = self.to_asr.process(frame)
        if len(pcm16):
            msg = media_pb2.AudioFrame(
                meta=self.meta(),
                sequence=self.seq,
                pcm=pcm16.astype("<i2").tobytes(),
                sample_rate=ASR_RATE,
                capture_unix_ns=time.time_ns(),
            )
            self.seq += 1
            await self.bus.publish(subjects.audio_in(self.call_id), msg)
            self.replay.keep(msg)

    def _note_onset(self, onset_ms: float) -> None:
        sample = round(onset_ms * ASR_RATE / 1000)
        self.onsets.append(sample)
        log.debug("caller speech onset", extra={"call_id": self.call_id, "stream_sample": sample})

    async def _play_one(self) -> None:
        held = self.holding or self.peer_hold or (self.amd is not None and self.amd.hold)
        if held or self.paused_since is not None or not self.queue:
            await self.transport.send_agent_frame(np.zeros(self.frame, np.int16), False)
            if self._stop_pending is not None:  # the first silence after confirmed speech
                metrics.BARGE_IN_STOP_LATENCY.labels(transport=self.transport.name).observe(
                    time.monotonic() - self._stop_pending
                )
                self._stop_pending = None
            return
        chunk = self.queue.popleft()
        now = time.monotonic()
        if self.playing != chunk.generation:
            self.playing, self.played_ms = chunk.generation, 0
        if chunk.generation in self._first_packet_pending:
            metrics.EDGE_FIRST_PACKET_LATENCY.labels(transport=self.transport.name).observe(
                now - self._first_packet_pending.pop(chunk.generation)
            )
            spoke_end = self._mouth_pending.pop(chunk.generation, None)
            if spoke_end is not None:
                metrics.MOUTH_TO_EAR.labels(transport=self.transport.name).observe(now - spoke_end)
            await self.playouts.first_packet(chunk.generation)
        if len(chunk.pcm):
            await self.transport.send_agent_frame(chunk.pcm, True)
            self.played_ms += FRAME_MS
        else:
            await self.transport.send_agent_frame(np.zeros(self.frame, np.int16), False)
        self.heard = (chunk.sentence_seq, chunk.text_end)
        if chunk.last_in_generation:
            done = control_pb2.ControlEvent(
                meta=self.meta(chunk.generation),
                playback_done=control_pb2.PlaybackDone(
                    generation_id=chunk.generation, played_ms=self.played_ms
                ),
            )
            await self.bus.publish(subjects.control(self.call_id), done, lane=Lane.CONTROL)
            self.playouts.finished(chunk.generation)
            self.playing = None
            self.verdict_for = None

    async def barge_in(self, why: str) -> None:
        generation = self.playing
        if generation is None:
            self.paused_since = self.verdict_for = None
            return
        await self.playouts.interrupted(generation, self.played_ms, self.heard)
        self._cancel_below(generation + 1)
        ev = control_pb2.ControlEvent(
            meta=self.meta(generation),
            barge_in=control_pb2.BargeIn(
                interrupted_generation_id=generation,
                played_ms=self.played_ms,
                heard_sentence_seq=self.heard[0],
                heard_text_chars=self.heard[1],
            ),
        )
        await self.bus.publish(subjects.control(self.call_id), ev, lane=Lane.CONTROL)
        metrics.BARGE_INS.labels(transport=self.transport.name).inc()
        log.info(
            "barge-in",
            extra={
                "call_id": self.call_id,
                "generation": generation,
                "played_ms": self.played_ms,
                "why": why,
            },
        )

    def _cancel_below(self, floor: int) -> None:
        self.floor = max(self.floor, floor)
        self.queue = collections.deque(c for c in self.queue if c.generation >= self.floor)
        self.playouts.forget_below(self.floor)
        if self.playing is not None and self.playing < self.floor:
            self.playing = None
        if self.verdict_for is not None and self.verdict_for < self.floor:
            self.verdict_for = None
        self.paused_since = None

    # --- bus events ---------------------------------------------------------------------------------
    async def on_speech(self, chunk: media_pb2.SpeechChunk, d: Delivery) -> None:
        gen = chunk.meta.generation_id
        if gen < self.floor:
            return
        if span := telemetry.start_child(d.headers, "edge.speech", call_id=self.call_id, generation=gen):
            span.end()  # only a turn's first chunk carries the trace: one span per turn
        if self.queue and self.queue[-1].generation < gen:
            self._cancel_below(gen)  # a newer reply supersedes what is still queued
        pcm = np.frombuffer(chunk.pcm[: len(chunk.pcm) // 2 * 2], dtype="<i2")
        if chunk.sample_rate and chunk.sample_rate != self.rate:
            log.warning(
                "speech chunk at wrong rate dropped",
                extra={"call_id": self.call_id, "rate": chunk.sample_rate},
            )
            return
        now = time.monotonic()
        if gen not in self._first_packet_pending and self.playing != gen and chunk.sequence == 0:
            self._first_packet_pending[gen] = now
            if self.speech_ended_at is not None:
                self._mouth_pending[gen] = self.speech_ended_at
            self.playouts.first_chunk(chunk, self.speech_ended_unix_ns)
        for start in range(0, max(len(pcm), 1), self.frame):
            piece = pcm[start : start + self.frame]
            if len(piece) and len(piece) < self.frame:
                piece = np.pad(piece, (0, self.frame - len(piece)))
            last = chunk.last_in_generation and start + self.frame >= len(pcm)
            self.queue.append(_Chunk(gen, piece, chunk.sentence_seq, chunk.text_end, last, now))

    async def on_transcript(self, tr: speech_pb2.Transcript, _: Delivery) -> None:
        """ASR's verdict on short speech that paused the agent: a backchannel, or no words at all,
        resumes; a real turn cancels, whether it comes while playout waits or after it resumed.
        Every final also tells the replay buffer what no longer needs replaying after an ASR
        takeover."""
        if tr.final and tr.speech_end_unix_ns:
            self.replay.transcribed(tr.speech_end_unix_ns)
        generation = self.verdict_for
        if not tr.final or generation is None:
            return
        self.verdict_for = None
        if self.playing != generation:
            return  # that reply is over (played to the end, or cancelled): nothing to interrupt
        if tr.backchannel or not any(c.isalnum() for c in tr.text):
            self.paused_since = None  # a false interruption: carry on from where playout paused
        else:
            await self.barge_in("caller turn")

    async def on_control(self, ev: control_pb2.ControlEvent, _: Delivery) -> None:
        kind = ev.WhichOneof("kind")
        if kind == "cancel":
            self._cancel_below(ev.cancel.generation_id + 1)
        elif kind == "hangup":
            await self.transport.hangup(ev.hangup.detail or "agent")
            reason: int = ev.hangup.reason or call_pb2.END_REASON_AGENT_HANGUP
            detail = ev.hangup.detail
            if self.amd is not None and self.amd.voicemail:
                reason, detail = self.amd.end_reason(reason), self.amd.detail
            await self.end(reason, detail)
        elif kind == "transfer":
            # In a task of its own: a transfer takes seconds and must not hold up the control lane.
            if not await self._transfer_approved(ev.transfer):
                return
            if self.transferring:
                await self._transfer_result(False, "a transfer is already in progress")
            else:
                self.transferring = True
                self.tasks.spawn(self._transfer(ev.transfer), "transfer")
        elif kind == "dtmf" and ev.dtmf.outbound:
            await self.transport.send_dtmf(ev.dtmf.digit)

    async def _transfer_approved(self, t: control_pb2.Transfer) -> bool:
        """Whether ``t`` carries policy's unused, signed approval for this call and its target."""
        try:
            grant = self.config.approvals.check(
                t.approval if t.HasField("approval") else None,
                action=approvals.TRANSFER,
                call_id=self.call_id,
                target=t.target[:MAX_TRANSFER_TARGET_CHARS],
            )
            if grant.decision_id in self.used_transfers:
                raise NotApproved(approvals.TRANSFER, "used", "approval already used")
        except NotApproved as exc:
            metrics.APPROVALS_REFUSED.labels(action=exc.action, reason=exc.reason).inc()
            log.warning("transfer refused", extra={"call_id": self.call_id, "reason": exc.reason})
            await self._transfer_result(False, exc.message)
            return False
        self.used_transfers.add(grant.decision_id)
        return True

    async def _transfer(self, t: control_pb2.Transfer) -> None:
        warm = t.kind == control_pb2.TRANSFER_KIND_WARM
        self.holding = warm
        try:
            ok, detail = await self.transport.transfer(t.target, warm, t.summary)
        finally:
            self.holding = self.transferring = False
        metrics.TRANSFERS.labels(kind="warm" if warm else "blind", outcome="ok" if ok else "failed").inc()
        await self._transfer_result(ok, detail)
        if ok:
            await self.end(call_pb2.END_REASON_TRANSFERRED, "transferred")

    async def _transfer_result(self, ok: bool, detail: str) -> None:
        result = control_pb2.ControlEvent(
            meta=self.meta(),
            transfer_result=control_pb2.TransferResult(ok=ok, detail=detail),
        )
        await self.bus.publish(subjects.control(self.call_id), result, lane=Lane.CONTROL)

    async def caller_dtmf(self, digit: str, duration_ms: int) -> None:
        ev = control_pb2.ControlEvent(
            meta=self.meta(), dtmf=control_pb2.Dtmf(digit=digit, duration_ms=duration_ms)
        )
        await self.bus.publish(subjects.control(self.call_id), ev, lane=Lane.CONTROL)
