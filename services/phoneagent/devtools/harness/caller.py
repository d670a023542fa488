"""The simulated caller: a real SIP UA that dials the agent, talks and listens over G.711 RTP.

It runs one :class:`~phoneagent.devtools.harness.scenario.Scenario`: speaks pre-synthesised utterances
(paced at 20 ms), waits for the agent to finish (silence on the received audio), barges in on
purpose, sends RFC 4733 DTMF and hangs up. Timings come from the caller's own clock: when it
stopped speaking, when the agent's audio first arrived, when the agent's audio stopped after a
barge-in. The recording and the agent transcript are made after the call.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field

import numpy as np

from phoneagent.devtools.harness.impair import Impairer, Impairments, ImpairStats
from phoneagent.devtools.harness.rtp_endpoint import RtpEndpoint
from phoneagent.devtools.harness.scenario import BargeIn, Dtmf, Hangup, Pause, Say, Scenario, Step, Wait
from phoneagent.devtools.harness.voice import CallerStyle, CallerVoice
from phoneagent.edge.sip import DialogHandlers, SipURI, UAConfig, UserAgent, negotiated, offer
from phoneagent.edge.sip.dialog import Dialog
from phoneagent.runtime.errors import PhoneAgentError, Unavailable
from phoneagent.runtime.redact import mask_number

log = logging.getLogger(__name__)
DEFAULT_TARGET = "sip:agent@127.0.0.1:5060"
POLL_S = 0.02


@dataclass
class Utterance:
    text: str
    start_mono: float
    end_mono: float
    end_unix_ns: int
    barge_in: bool = False
    reply_latency_ms: float | None = None  # caller stops speaking -> first agent audio
    barge_stop_ms: float | None = None  # caller starts over the agent -> agent audio stops


@dataclass
class AgentTurn:
    start_s: float  # seconds from the start of media
    end_s: float
    text: str = ""


@dataclass
class CallResult:
    scenario: Scenario
    caller_user: str
    sip_call_id: str = ""
    ended_by: str = ""  # "agent" or "caller"
    utterances: list[Utterance] = field(default_factory=list)
    agent_turns: list[AgentTurn] = field(default_factory=list)
    refer_targets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    caller_pcm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    agent_pcm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    media_start_mono: float = 0.0
    impair: ImpairStats = field(default_factory=ImpairStats)
    dtmf_sent: int = 0

    @property
    def agent_text(self) -> str:
        return " ".join(t.text for t in self.agent_turns if t.text)

    @property
    def reply_text(self) -> str:
        """What the agent said once the caller had begun speaking: its replies, without the
        greeting and notices every call opens with ("How can I help you today?" must not
        answer a caller who asks to be seen today). All of it when the caller never spoke."""
        if not self.utterances:
            return self.agent_text
        spoke = self.utterances[0].start_mono - self.media_start_mono
        return " ".join(t.text for t in self.agent_turns if t.text and t.end_s > spoke)


class SimulatedCaller:
    def __init__(
        self,
        scenario: Scenario,
        voice: CallerVoice,
        *,
        target: str = DEFAULT_TARGET,
        impairments: Impairments | None = None,
        caller_user: str | None = None,
        host: str = "127.0.0.1",
        answer_timeout_s: float = 30.0,
        style: CallerStyle | None = None,
    ) -> None:
        """``style``: the pauses before each utterance that follows the agent's turn (none by default)."""
        SipURI.parse(target)  # a bad target fails here, before anything starts
        self.scenario = scenario
        self.voice = voice
        self.target = target
        self.impairments = (impairments or Impairments()).validate()
        self.host = host
        self.answer_timeout_s = answer_timeout_s
        self.result = CallResult(scenario, caller_user or scenario.caller)
        self._ep: RtpEndpoint | None = None
        self._dialog: Dialog | None = None
        self._since = 0.0  # agent speech before this moment belongs to an earlier turn
        self.style = style or CallerStyle()
        self._delays = iter(self.style.delays())
        self._after_agent = False  # the last step waited for the agent: pause before speaking

    def prepare(self) -> None:
        """Synthesise every utterance up front (blocking; call from a worker thread)."""
        texts = [s.text for s in self.scenario.steps if isinstance(s, Say | BargeIn)]
        if self.impairments.greets_first:
            texts.insert(0, self.scenario.greeting)
        self.voice.prepare(texts)

    async def run(self) -> CallResult:
        await asyncio.to_thread(self.prepare)
        ua = UserAgent(
            UAConfig(
                host=self.host,
                user=self.result.caller_user,
                codecs=("PCMU",),
                user_agent="phone-agent-harness",
            )
        )
        ep = self._ep = RtpEndpoint(Impairer(self.impairments), self.host)
        await ua.start()
        try:
            port = await ep.open()
            local = offer(self.host, port, ("PCMU",))
            handlers = DialogHandlers(on_refer=self._on_refer)
            try:
                dialog = await asyncio.wait_for(
                    ua.call(self.target, local, handlers=handlers), self.answer_timeout_s
                )
            except TimeoutError:
                raise Unavailable("the agent did not answer in time") from None
            self._dialog = dialog
            self.result.sip_call_id = dialog.call_id
            if dialog.remote_sdp is None:
                raise Unavailable("the agent answered without SDP")
            ep.start(negotiated(dialog.remote_sdp, local))
            self.result.media_start_mono = self._since = ep.started_mono
            log.info(
                "harness call answered",
                extra={"caller": mask_number(self.result.caller_user), "scenario": self.scenario.name},
            )
            await self._script(dialog)
            self.result.ended_by = "agent" if dialog.end_reason == "remote_bye" else "caller"
        finally:
            await ep.close()
            await ua.close()
        self._finish(ep)
        return self.result

    async def _script(self, dialog: Dialog) -> None:
        if self.impairments.greets_first:
            await self._say(self.scenario.greeting)
        for index, step in enumerate(self.scenario.steps, 1):
            if dialog.ended.is_set():
                self.result.notes.append(f"call ended by the agent before step {index}")
                return
            await self._step(step)
        if not dialog.ended.is_set():
            await dialog.bye()

    async def _step(self, step: Step) -> None:
        assert self._ep is not None and self._dialog is not None
        after_agent, self._after_agent = self._after_agent, isinstance(step, Wait)
        if isinstance(step, Say):
            if after_agent:
                await self._sleep_unless_ended(next(self._delays))
            await self._say(step.text)
        elif isinstance(step, Wait):
            await self._wait_agent(step)
        elif isinstance(step, BargeIn):
            await self._barge_in(step)
        elif isinstance(step, Dtmf):
            seconds = self._ep.send_digits(step.digits, step.duration_ms)
            self.result.dtmf_sent += len(step.digits)
            await self._sleep_unless_ended(seconds + 0.1)
        elif isinstance(step, Pause):
            await self._sleep_unless_ended(step.ms / 1000)
        elif isinstance(step, Hangup):
            await self._dialog.bye()

    async def _say(self, text: str, barge_in: bool = False) -> Utterance:
        assert self._ep is not None
        pcm = await asyncio.to_thread(self.voice.synthesize, text)
        start = asyncio.get_running_loop().time()
        end_mono, end_ns = await self._ep.play(pcm)
        utt = Utterance(text, start, end_mono, end_ns, barge_in)
        self.result.utterances.append(utt)
        self._since = end_mono
        return utt

    async def _agent_started(self, timeout_s: float) -> float | None:
        """Loop time of the agent's first speech after the last caller utterance, or None."""
        assert self._ep is not None and self._dialog is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and not self._dialog.ended.is_set():
            first = self._ep.first_speech_after(self._since)
            if first is not None:
                return first.mono
            await asyncio.sleep(POLL_S)
        return None

    async def _wait_agent(self, step: Wait) -> None:
        assert self._ep is not None and self._dialog is not None
        started = await self._agent_started(step.timeout_s)
        if started is None:
            if not self._dialog.ended.is_set():
                self.result.notes.append(f"the agent did not speak within {step.timeout_s:g} s")
            return
        loop = asyncio.get_running_loop()
        while loop.time() - started < step.max_s and not self._dialog.ended.is_set():
            last = self._ep.last_speech()
            if last is not None and loop.time() - last.mono >= step.silence_ms / 1000:
                return
            await asyncio.sleep(POLL_S)

    async def _barge_in(self, step: BargeIn) -> None:
        started = await self._agent_started(step.timeout_s)
        if started is None:
            self.result.notes.append(f"no agent speech to barge in on within {step.timeout_s:g} s")
        else:
            delay = started + step.after_ms / 1000 - asyncio.get_running_loop().time()
            if delay > 0:
                await self._sleep_unless_ended(delay)
        await self._say(step.text, barge_in=True)

    async def _sleep_unless_ended(self, seconds: float) -> None:
        assert self._dialog is not None
        try:
            await asyncio.wait_for(self._dialog.ended.wait(), seconds)
        except TimeoutError:
            pass

    async def _on_refer(self, dialog: Dialog, target: SipURI) -> int:
        self.result.refer_targets.append(str(target))
        return 200  # the simulated phone network "connects" the transfer

    def _finish(self, ep: RtpEndpoint) -> None:
        r = self.result
        r.caller_pcm = np.concatenate(ep.caller_track) if ep.caller_track else r.caller_pcm
        r.agent_pcm = np.concatenate(ep.agent_track) if ep.agent_track else r.agent_pcm
        r.impair = ep.impairer.stats
        for utt in r.utterances:
            first = ep.first_speech_after(utt.end_mono)
            if first is not None:
                utt.reply_latency_ms = (first.mono - utt.end_mono) * 1000
            if utt.barge_in:
                stop = ep.speech_stop_after(utt.start_mono)
                if stop is not None and stop.mono < utt.end_mono:
                    utt.barge_stop_ms = max(0.0, (stop.mono + 0.02 - utt.start_mono) * 1000)


def unique_user(base: str) -> str:
    """A caller number with a random tail, so concurrent calls can be told apart on the bus."""
    digits = base.lstrip("+")
    return "+" + digits[:-4] + f"{secrets.randbelow(10000):04d}"


async def run_call(scenario: Scenario, voice: CallerVoice, **kwargs: object) -> CallResult:
    """Place one call; :class:`PhoneAgentError` with a clear message when it cannot be placed."""
    try:
        return await SimulatedCaller(scenario, voice, **kwargs).run()  # type: ignore[arg-type]
    except PhoneAgentError:
        raise
    except OSError as exc:
        raise Unavailable(f"call could not be placed ({type(exc).__name__})") from None
