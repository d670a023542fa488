"""Answering-machine detection (AMD) for outbound calls, one 20 ms frame at a time.

After the callee answers, the agent waits for the callee to speak first and listens:

* a person says a short greeting ("Hello?", under ~1.5 s) and then pauses for an answer:
  **HUMAN** once ``human_silence_ms`` of silence follows less than ``machine_speech_ms`` of speech;
* an answering machine talks on (``machine_speech_ms`` of speech, short gaps included):
  **MACHINE**, first as soon as the greeting is long enough (``ready`` False), then again once the
  greeting is over (``ready`` True): after a beep (a steady tone of 800-2000 Hz for at least
  ``beep_min_ms``, found by the share of the frame's energy in one FFT bin) or after
  ``machine_end_silence_ms`` of silence;
* nothing decisive within ``timeout_ms``: **UNKNOWN**.

Speech segments come from the barge-in VAD (level over an adaptive noise floor and
zero-crossing rate), so the detector costs one small FFT and a few sums per frame.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from phoneagent.agents.disclosure import DISCLOSURE_CORE, enforce_disclosure
from phoneagent.edge.media.vad import BargeInVad, VadConfig, VadEventKind
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Lane
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.v1 import call_pb2, control_pb2

if TYPE_CHECKING:
    from phoneagent.edge.callflow import EdgeCall as EdgeCallLike

log = logging.getLogger(__name__)


class AmdOutcome(enum.StrEnum):
    HUMAN = "human"
    MACHINE = "machine"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class AmdDecision:
    outcome: AmdOutcome
    at_ms: float  # call time (from the first frame) when decided
    reason: str  # "short greeting", "long greeting", "beep", "greeting ended", "no speech", ...
    ready: bool  # the callee has finished: the agent may speak now
    beep_at_ms: float | None = None  # start of the beep, when one was heard


@dataclass(frozen=True, slots=True)
class AmdConfig:
    sample_rate: int = 8000
    frame_ms: int = 20
    human_silence_ms: int = 800  # silence after a short greeting that makes it a person
    machine_speech_ms: int = 2500  # this much greeting speech makes it a machine
    machine_end_silence_ms: int = 1500  # silence after a machine greeting: it is over
    timeout_ms: int = 6000  # no verdict by then: UNKNOWN
    machine_wait_ms: int = 30000  # longest wait for a machine greeting to end
    beep_min_ms: int = 150
    beep_low_hz: float = 800.0
    beep_high_hz: float = 2000.0
    beep_tonality: float = 0.6  # share of the frame's energy near the peak bin
    beep_min_dbfs: float = -40.0

    def __post_init__(self) -> None:
        if self.sample_rate * self.frame_ms % 1000:
            raise InvalidArgument("AMD frame must be a whole number of samples")
        if not 0 < self.human_silence_ms < self.timeout_ms:
            raise InvalidArgument("AMD human_silence_ms must be positive and below timeout_ms")
        if not self.beep_low_hz < self.beep_high_hz < self.sample_rate / 2:
            raise InvalidArgument("AMD beep band must lie below the Nyquist frequency")


class BeepDetector:
    """A steady tone in the beep band: consecutive tonal frames with the same peak bin."""

    def __init__(self, config: AmdConfig) -> None:
        self.config = config
        n = config.sample_rate * config.frame_ms // 1000
        self._window = np.hanning(n).astype(np.float32)
        self._hz_per_bin = config.sample_rate / n
        self._min_frames = math.ceil(config.beep_min_ms / config.frame_ms)
        self._bin: int | None = None
        self._run = 0
        self._start_ms = 0.0

    def process(self, frame: npt.NDArray[np.int16], start_ms: float) -> float | None:
        """Feed one frame; returns the beep's start time when a tone that was long enough just ended."""
        peak = self._tonal_bin(frame)
        if peak is not None and self._bin is not None and abs(peak - self._bin) <= 1:
            self._run += 1
            return None
        found = self._start_ms if self._run >= self._min_frames else None
        self._bin, self._run, self._start_ms = peak, int(peak is not None), start_ms
        return found

    def _tonal_bin(self, frame: npt.NDArray[np.int16]) -> int | None:
        cfg = self.config
        x = frame.astype(np.float32) / 32768.0
        if 10.0 * math.log10(float(np.dot(x, x)) / x.size + 1e-12) < cfg.beep_min_dbfs:
            return None
        power = np.abs(np.fft.rfft(x * self._window)) ** 2
        peak = int(np.argmax(power))
        near = float(power[max(peak - 1, 0) : peak + 2].sum())
        if near < cfg.beep_tonality * float(power.sum()):
            return None
        hz = peak * self._hz_per_bin
        return peak if cfg.beep_low_hz <= hz <= cfg.beep_high_hz else None


class AnsweringMachineDetector:
    """Feed the callee's frames from the answer on; :meth:`process` returns each decision once."""

    def __init__(self, config: AmdConfig | None = None) -> None:
        self.config = cfg = config or AmdConfig()
        self.frame_samples = cfg.sample_rate * cfg.frame_ms // 1000
        self.vad = BargeInVad(VadConfig(sample_rate=cfg.sample_rate, frame_ms=cfg.frame_ms))
        self.beep = BeepDetector(cfg)
        self.now_ms = 0.0
        self.speech_ms = 0.0  # closed speech segments
        self.segment_onset: float | None = None  # open speech segment
        self.last_speech_end: float | None = None
        self.decision: AmdDecision | None = None  # latest decision
        self.finished = False  # nothing more will be decided

    def process(self, frame: npt.NDArray[np.int16]) -> AmdDecision | None:
        if self.finished:
            return None
        if frame.shape != (self.frame_samples,) or frame.dtype != np.int16:
            raise InvalidArgument(f"AMD expects {self.frame_samples} int16 samples per frame")
        start_ms = self.now_ms
        self.now_ms += self.config.frame_ms
        beep_at = self.beep.process(frame, start_ms)
        self._track_speech(frame)
        return self._decide(beep_at)

    def _track_speech(self, frame: npt.NDArray[np.int16]) -> None:
        event = self.vad.process(frame)
        if event is None:
            return
        if event.kind is VadEventKind.CONFIRMED:
            self.segment_onset = event.onset_ms
        elif event.kind is VadEventKind.ENDED and self.segment_onset is not None:
            self.speech_ms += event.at_ms - self.segment_onset
            self.segment_onset = None
            self.last_speech_end = event.at_ms

    def total_speech_ms(self) -> float:
        open_ms = 0.0 if self.segment_onset is None else self.now_ms - self.segment_onset
        return self.speech_ms + open_ms

    def _decide(self, beep_at: float | None) -> AmdDecision | None:
        cfg, now = self.config, self.now_ms
        if beep_at is not None:
            return self._emit(AmdOutcome.MACHINE, "beep", ready=True, beep_at_ms=beep_at)
        machine = self.decision is not None and self.decision.outcome is AmdOutcome.MACHINE
        silent_for = None
        if self.segment_onset is None and self.last_speech_end is not None:
            silent_for = now - self.last_speech_end
        if machine:
            if silent_for is not None and silent_for >= cfg.machine_end_silence_ms:
                return self._emit(AmdOutcome.MACHINE, "greeting ended", ready=True)
            if now >= cfg.machine_wait_ms:
                return self._emit(AmdOutcome.MACHINE, "greeting too long", ready=True)
            return None
        if self.total_speech_ms() >= cfg.machine_speech_ms:
            return self._emit(AmdOutcome.MACHINE, "long greeting", ready=False)
        if silent_for is not None and silent_for >= cfg.human_silence_ms:
            return self._emit(AmdOutcome.HUMAN, "short greeting", ready=True)
        if now >= cfg.timeout_ms:
            why = "no speech" if self.total_speech_ms() == 0 else "undecided"
            return self._emit(AmdOutcome.UNKNOWN, why, ready=True)
        return None

    def _emit(
        self, outcome: AmdOutcome, reason: str, *, ready: bool, beep_at_ms: float | None = None
    ) -> AmdDecision:
        self.decision = AmdDecision(outcome, self.now_ms, reason, ready, beep_at_ms)
        self.finished = ready
        return self.decision


# --- the edge side: hold the agent, act on the verdict ----------------------------------------------
AMD_MODES = ("hangup", "leave-message", "wait")
DEFAULT_MESSAGE = "Hello, this is an automated call. We will try to reach you again later. Goodbye."


class AmdGate:
    """AMD for one outbound call (label ``amd``): the agent's playout is held until a verdict.

    HUMAN / UNKNOWN: playout goes on (the agent greets as usual). MACHINE with ``hangup``: hang up
    with END_REASON_VOICEMAIL as soon as the greeting is known to be long. ``leave-message``: wait
    for the beep (or the greeting's end), drop what the agent queued meanwhile, ask for the label
    ``message`` (or a default) to be said and hung up after (a policy directive); the hang-up ends
    the call as VOICEMAIL. The message always starts with the AI disclosure: the greeting that
    carried it was never played to the recorder (policy adds its configured addition). ``wait``:
    once the greeting is over, carry on as with a person.
    """

    def __init__(self, call: EdgeCallLike, mode: str, message: str) -> None:
        if mode not in AMD_MODES:
            raise InvalidArgument(f"unknown amd mode {mode[:20]!r}")
        self.call = call
        self.mode = mode
        self.message = enforce_disclosure(message.strip() or DEFAULT_MESSAGE, DISCLOSURE_CORE)
        self.detector = AnsweringMachineDetector(AmdConfig(sample_rate=call.rate))
        self.hold = True
        self.voicemail = False  # the call reached a machine: it ends as VOICEMAIL
        self.detail = ""

    async def on_frame(self, frame: npt.NDArray[np.int16]) -> None:
        decision = self.detector.process(frame)
        if decision is None:
            return
        log.info(
            "amd decision",
            extra={
                "call_id": self.call.call_id,
                "outcome": decision.outcome.value,
                "reason": decision.reason,
                "at_ms": decision.at_ms,
                "mode": self.mode,
            },
        )
        self.detail = f"amd: {decision.outcome.value} ({decision.reason})"
        if decision.outcome is not AmdOutcome.MACHINE:
            self.hold = False
        elif self.mode == "hangup":
            self.voicemail = True
            await self.call.transport.hangup("answering machine")
            await self.call.end(call_pb2.END_REASON_VOICEMAIL, self.detail)
        elif decision.ready and self.mode == "wait":
            self.hold = False
        elif decision.ready:
            await self._leave_message()

    async def _leave_message(self) -> None:
        call = self.call
        self.voicemail = True
        newest = max([c.generation for c in call.queue] + [call.playing or 0, call.floor - 1])
        call._cancel_below(newest + 1)  # nothing said to the greeting is played to the recorder
        self.hold = False
        directive = control_pb2.ControlEvent(
            meta=call.meta(),
            directive=control_pb2.PolicyDirective(
                action=control_pb2.DIRECTIVE_ACTION_SAY_AND_HANG_UP, text=self.message, rule="amd"
            ),
        )
        await call.bus.publish(subjects.control(call.call_id), directive, lane=Lane.CONTROL)

    def end_reason(self, reason: int) -> int:
        """The reason a hang-up ends the call with: VOICEMAIL once a machine was reached."""
        return call_pb2.END_REASON_VOICEMAIL if self.voicemail else reason


def amd_gate_for(call: EdgeCallLike) -> AmdGate | None:
    """The gate for an outbound call whose CallStarted carries an ``amd`` label, else None."""
    started = call.started
    mode = started.labels.get("amd", "")
    if started.direction != call_pb2.DIRECTION_OUTBOUND or not mode:
        return None
    if mode not in AMD_MODES:
        log.warning("unknown amd mode ignored", extra={"call_id": call.call_id, "mode": mode[:20]})
        return None
    return AmdGate(call, mode, started.labels.get("message", ""))
