"""Warm transfer to a human: hold audio for the caller, a spoken summary for the human, then a bridge.

The edge dials the human on a second SIP leg while the caller hears a soft hold chime. When the
human answers, a short summary of the call is played to them, rendered by the TTS service on
request (``pa.v1.tts.render``, in the calls' voice: the edge loads no engine); then the two legs
are bridged in the edge: decoded frames are relayed both ways every 20 ms, so it works with any
trunk (no REFER support needed). The bridge lives until either
side hangs up, and then hangs up the other. Any failure before the bridge leaves the caller with
the agent.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from phoneagent.audio.resample import StreamResampler
from phoneagent.edge.media.pacer import Pacer
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.sip.calls import CallFailed
from phoneagent.edge.sip.dialog import Dialog
from phoneagent.edge.sip.headers import SipURI
from phoneagent.edge.sip.sdp import NoCommonCodec, negotiated, offer
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Lane
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError, Unavailable
from phoneagent.runtime.meta import new_meta
from phoneagent.v1 import media_pb2

log = logging.getLogger(__name__)
RATE = 8000
FRAME = RATE // 50  # 20 ms


@dataclass(frozen=True)
class WarmTransferConfig:
    host: str = "127.0.0.1"  # where the human leg's RTP socket binds
    advertised: str = "127.0.0.1"  # address put in its SDP
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    answer_timeout_s: float = 30.0
    max_summary_s: float = 30.0
    voice: SummaryVoice | None = None  # speaks the summary through TTS; None: no warm transfer


class HoldTone:
    """A soft two-note chime (523 Hz then 659 Hz, 0.3 s each) every two seconds, at -24 dBFS."""

    NOTES = ((0.0, 523.25), (0.3, 659.25))
    PERIOD_S = 2.0
    AMPLITUDE = 2000.0

    def __init__(self, rate: int = RATE) -> None:
        self.n = 0
        self.rate = rate
        self.frame = rate // 50

    def next_frame(self) -> np.ndarray:
        t = (np.arange(self.frame) + self.n) / self.rate
        self.n += self.frame
        phase = t % self.PERIOD_S
        out = np.zeros(self.frame)
        for start, freq in self.NOTES:
            on = (phase >= start) & (phase < start + 0.3)
            env = np.sin(np.pi * np.clip((phase - start) / 0.3, 0, 1))  # fade in and out: no clicks
            out += np.where(on, env * np.sin(2 * np.pi * freq * t), 0.0)
        return (self.AMPLITUDE * out).astype(np.int16)


class SummaryVoice:
    """Asks TTS over the bus (``pa.v1.tts.render``) to speak the summary: 8 kHz int16 PCM."""

    def __init__(self, bus: Bus, timeout_s: float = 20.0) -> None:
        self.bus = bus
        self.timeout_s = timeout_s

    async def render(self, text: str, max_s: float, call_id: str = "") -> np.ndarray:
        """Raises PhoneAgentError when no TTS answers in time or it could not render the text."""
        if len(text) > subjects.RENDER_MAX_TEXT:  # cut at a word: TTS refuses longer text
            text = text[: subjects.RENDER_MAX_TEXT].rsplit(" ", 1)[0]
        req = media_pb2.RenderRequest(
            meta=new_meta(call_id, "edge"), text=text, sample_rate=RATE, max_seconds=max_s
        )
        reply = await self.bus.request(
            subjects.tts_render(),
            req,
            media_pb2.RenderReply,
            timeout=self.timeout_s,
            lane=Lane.DATA,
            max_bytes=subjects.RENDER_MAX_BYTES + 1024,
        )
        if reply.HasField("error"):
            raise PhoneAgentError(ErrorKind.from_wire(reply.error.kind), reply.error.message[:120])
        if reply.sample_rate != RATE or len(reply.pcm) % 2:
            raise PhoneAgentError(ErrorKind.INTERNAL, "TTS answered with unusable audio")
        return np.frombuffer(reply.pcm, dtype="<i2").astype(np.int16)


class Bridge:
    """Relays audio between two answered legs until either hangs up, then hangs up the other."""

    def __init__(self, a: tuple[Dialog, RtpSession], b: tuple[Dialog, RtpSession], call_id: str) -> None:
        self.a, self.b = a, b
        self.call_id = call_id
        self.frames = 0
        self._task: asyncio.Task[None] | None = None
        self._rates: dict[tuple[int, int], StreamResampler] = {}  # a wideband caller, a narrowband human

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self.wait()

    def _relay(self, src: RtpSession, dst: RtpSession) -> None:
        frame = src.pull_frame()
        size = dst.sample_rate // 50
        if frame is None:
            dst.send_audio(np.zeros(size, np.int16), False)
            return
        if src.sample_rate != dst.sample_rate:
            key = (src.sample_rate, dst.sample_rate)
            rs = self._rates.setdefault(key, StreamResampler(*key))
            frame = rs.process(frame)
            frame = frame[:size] if len(frame) >= size else np.pad(frame, (0, size - len(frame)))
        dst.send_audio(frame, True)

    async def _run(self) -> None:
        (da, ra), (db, rb) = self.a, self.b
        pacer = Pacer(0.02)
        log.info("transfer bridge up", extra={"call_id": self.call_id})
        try:
            while not (da.ended.is_set() or db.ended.is_set()):
                await pacer.next_tick()
                self._relay(ra, rb)
                self._relay(rb, ra)
                self.frames += 1
        finally:
            for dialog in (da, db):
                if not dialog.ended.is_set():
                    dialog.ua.spawn(dialog.bye())
            rb.close()
            log.info("transfer bridge down", extra={"call_id": self.call_id, "frames": self.frames})


class WarmTransfer:
    """One warm transfer attempt of the call on ``caller`` (its dialog and RTP session)."""

    def __init__(
        self, config: WarmTransferConfig, caller: Dialog, caller_rtp: RtpSession, call_id: str
    ) -> None:
        self.config = config
        self.caller = caller
        self.caller_rtp = caller_rtp
        self.call_id = call_id
        self.leg: Dialog | None = None
        self.leg_rtp: RtpSession | None = None

    async def run(self, target: SipURI, summary: str) -> tuple[bool, str, Bridge | None]:
        """(ok, safe detail, the bridge when ok). The caller is on hold meanwhile (the transport's job)."""
        try:
            return await self._attempt(target, summary)
        except BaseException:
            await self._drop_leg()
            raise

    async def _attempt(self, target: SipURI, summary: str) -> tuple[bool, str, Bridge | None]:
        if self.config.voice is None:
            return False, "no voice for the transfer summary", None
        try:
            speech = await self.config.voice.render(
                summary or "Transferring a call.", self.config.max_summary_s, self.call_id
            )
        except PhoneAgentError as exc:
            log.warning(
                "warm transfer summary failed", extra={"call_id": self.call_id, "reason": exc.message}
            )
            return False, f"summary could not be rendered: {exc.message}"[:120], None
        ok, detail = await self._dial(target)
        if not ok:
            return False, detail, None
        if not await self._play(speech):
            await self._drop_leg()
            return False, "human hung up during the summary", None
        assert self.leg is not None and self.leg_rtp is not None
        bridge = Bridge((self.caller, self.caller_rtp), (self.leg, self.leg_rtp), self.call_id)
        self.leg = self.leg_rtp = None  # the bridge owns them now
        return True, "bridged", bridge

    async def _dial(self, target: SipURI) -> tuple[bool, str]:
        c = self.config
        try:
            self.leg_rtp = await RtpSession.open(c.host, c.rtp_port_min, c.rtp_port_max, self.call_id)
        except Unavailable:
            return False, "no RTP port for the transfer leg"
        self.leg_rtp.set_rate(RATE)  # the summary is 8 kHz; a G.722 leg is resampled at its codec
        local = offer(c.advertised, self.leg_rtp.port, c.codecs)
        try:
            self.leg = await self.caller.ua.call(target, local, timeout_s=c.answer_timeout_s)
        except CallFailed as exc:
            await self._drop_leg()
            log.info("warm transfer not answered", extra={"call_id": self.call_id, "status": exc.status})
            return False, f"sip {exc.status}"
        try:
            if self.leg.remote_sdp is None:
                raise NoCommonCodec("answer without SDP")
            self.leg_rtp.start(negotiated(self.leg.remote_sdp, local))
        except NoCommonCodec:
            await self._drop_leg()
            return False, "no common codec with the transfer target"
        return True, ""

    async def _play(self, speech: np.ndarray) -> bool:
        """Play the summary to the human, paced at 20 ms; False if they hang up meanwhile."""
        assert self.leg is not None and self.leg_rtp is not None
        pacer = Pacer(0.02)
        for start in range(0, len(speech), FRAME):
            if self.leg.ended.is_set() or self.caller.ended.is_set():
                return False
            await pacer.next_tick()
            frame = speech[start : start + FRAME]
            self.leg_rtp.send_audio(np.pad(frame, (0, FRAME - len(frame))), True)
            self.leg_rtp.pull_frame()  # keep the human's jitter buffer drained
        return not self.leg.ended.is_set()

    async def _drop_leg(self) -> None:
        leg, rtp = self.leg, self.leg_rtp
        self.leg = self.leg_rtp = None
        if leg is not None and not leg.ended.is_set():
            leg.ua.spawn(leg.bye())
        if rtp is not None:
            rtp.close()
