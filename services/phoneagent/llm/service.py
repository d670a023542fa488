"""LLM service: the dialog of each call, claimed from the ``llm`` queue group.

Final caller transcripts start turns (a preflight starts the reply early, held until the
final confirms it); replies stream sentence by sentence to the call's ``reply`` subject (policy
approves them for speech). Barge-in and playback reports arrive
on the control lane. Conversation state is kept in the ``pa_dialog`` key-value bucket after
every change, so a replica that takes a call over continues the same conversation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from phoneagent.agents.agent import Agent, load_agent
from phoneagent.llm.asr_errors import AsrErrorReaction
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import Answered, DialogConfig, DialogState, Sentence
from phoneagent.llm.domain.calendar_facts import agent_passages
from phoneagent.llm.domain.knowledge import KnowledgeBase, open_knowledge_base
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tool_result import CallContext
from phoneagent.llm.domain.tools import RETRY_AFTER_S, ToolExecutor
from phoneagent.llm.engines.base import create_engine, engine_options
from phoneagent.llm.preflight import goes_beyond
from phoneagent.llm.priority import LiveFirst
from phoneagent.llm.prompting import Prompter
from phoneagent.llm.settings import LlmSettings
from phoneagent.llm.streaming import FIRST_PHRASE_MIN_WORDS
from phoneagent.llm.summaries import SummaryWorker
from phoneagent.llm.tools import Tools
from phoneagent.runtime import streams, subjects, telemetry
from phoneagent.runtime.bus import Delivery, Lane, Subscription
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.modelfiles import cache_dir
from phoneagent.runtime.service import Service
from phoneagent.runtime.sessions import CALL_ENDED
from phoneagent.runtime.settings import CommonSettings
from phoneagent.runtime.transfers import request_transfer
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, policy_pb2, session_pb2, speech_pb2, tools_pb2

log = logging.getLogger(__name__)
SETTINGS = LlmSettings
OUTBOUND_GREET_AFTER_S = 3.0
RETENTION_TIMEOUT_S = 60.0  # one purge round; a database that stalls longer is tried again later
_ANSWERED = {
    Answered.MODEL: speech_pb2.ANSWERED_MODEL,
    Answered.MODEL_TOOL: speech_pb2.ANSWERED_MODEL_TOOL,
    Answered.CODE: speech_pb2.ANSWERED_CODE,
    Answered.FALLBACK: speech_pb2.ANSWERED_FALLBACK,
}


class LlmCallSession:
    def __init__(self, svc: LlmService, claim: session_pb2.SessionClaim, taken_over: bool) -> None:
        self.svc = svc
        self.call = claim.call
        self.call_id = claim.call.meta.call_id
        self.taken_over = taken_over
        self.subs: list[Subscription[Any]] = []
        self.dialog: Dialog | None = None
        self.hangup_after: int | None = None
        self.agent_speaking: int | None = None  # the newest generation published and not yet played out
        self.transfer_after: tuple[int, str] | None = None  # (generation, target): policy escalation
        self._greet_timer: asyncio.Task[None] | None = None
        # The newest caller turn a policy directive answered. Policy hears each final on the
        # data lane and answers on the control lane, so its words can arrive here before the
        # final they answer: that final must not start a reply that cuts them off.
        self.policy_answered_turn = 0
        self.asr_errors = AsrErrorReaction(self.call_id, self._say_again, self._busy)

    def meta(self, *, turn: int = 0, generation: int = 0) -> common_pb2.EventMeta:
        return new_meta(self.call_id, f"llm/{self.svc.replica}", turn_id=turn, generation_id=generation)

    async def start(self) -> None:
        svc = self.svc
        state = await svc.load_state(self.call_id) if self.taken_over else None
        uri = self.call.from_uri if self.call.direction == call_pb2.DIRECTION_INBOUND else self.call.to_uri
        caller = _uri_user(uri)  # "sip:+12125550177@host:port" -> "+12125550177", not host digits too
        tools = (
            Tools(svc.executor, CallContext(self.call_id, caller or None), record=self.publish_tool_record)
            if svc.executor
            else None
        )
        self.dialog = Dialog(
            self.call_id,
            svc.engine,
            system_prompt=svc.system_prompt,
            greeting=svc.agent.greeting,
            publish=self.publish,
            save=self.save,
            tools=tools,
            action=self.action,
            config=svc.dialog_config,
            state=state,
            context=svc.turn_context,
        )
        bus = svc.bus
        self.subs.append(
            await bus.subscribe(subjects.transcript(self.call_id), speech_pb2.Transcript, self.on_transcript)
        )
        self.subs.append(
            await bus.subscribe(
                subjects.control(self.call_id), control_pb2.ControlEvent, self.on_control, lane=Lane.CONTROL
            )
        )
        self.subs.append(
            await bus.subscribe(
                subjects.lifecycle(self.call_id), call_pb2.CallEvent, self.on_lifecycle, lane=Lane.CONTROL
            )
        )
        self.subs.append(
            await bus.subscribe(subjects.asr_events(self.call_id), speech_pb2.AsrEvent, self.on_asr)
        )

    async def on_asr(self, ev: speech_pb2.AsrEvent, _: Delivery) -> None:
        """An ASR error: the caller is asked to say it again (see :mod:`phoneagent.llm.asr_errors`).
        Speech after a preflight, or a partial that goes beyond its words, means the caller went
        on: the reply held for the preflight is thrown away at once."""
        if self.dialog is None:
            return
        kind = ev.WhichOneof("event")
        if kind == "error":
            await self.asr_errors.on_error(ev.error)
        spec = self.dialog.speculative
        if spec is None:
            if kind == "transcript" and not ev.transcript.final and not ev.transcript.preflight:
                self._prefill_partial(ev.transcript)
            return
        if kind == "speech_started" and (
            ev.speech_started.meta.turn_id > spec.turn
            or (spec.speech_end_unix_ns and ev.speech_started.speech_start_unix_ns > spec.speech_end_unix_ns)
        ):
            await self.dialog.drop_speculation("caller went on")
        elif kind == "transcript" and not ev.transcript.final and not ev.transcript.preflight:
            partial = ev.transcript
            if partial.meta.turn_id > spec.turn or (
                partial.meta.turn_id == spec.turn and goes_beyond(partial.text, spec.text)
            ):
                await self.dialog.drop_speculation("caller went on")

    def _prefill_partial(self, partial: speech_pb2.Transcript) -> None:
        """The caller's words so far, while they speak: evaluated ahead in the background (see
        :meth:`Dialog.prefill_caller`), unless the agent is speaking or the words are not a turn."""
        dialog = self.dialog
        if dialog is None or not self.svc.settings.prefill_partials or self.agent_speaking is not None:
            return
        if partial.meta.turn_id <= self.policy_answered_turn or not self._takes_turn(partial):
            return
        dialog.prefill_caller(partial.meta.turn_id, partial.text)

    def _busy(self) -> bool:
        """The agent is speaking, about to, or has not greeted yet: no "say it again" now."""
        dialog = self.dialog
        if dialog is None or not dialog.state.generation or self.agent_speaking is not None:
            return True
        return dialog.reply is not None and not dialog.reply.finished

    async def _say_again(self, text: str) -> None:
        if self.dialog is not None:
            await self.dialog.say_directive(text)

    async def on_lifecycle(self, ev: call_pb2.CallEvent, _: Delivery) -> None:
        # Greet once the call is answered: by then every stage has its session and listens.
        if (
            ev.WhichOneof("event") == "answered"
            and self.dialog is not None
            and self.call.direction == call_pb2.DIRECTION_INBOUND
        ):
            await self.dialog.greet()
        elif ev.WhichOneof("event") == "answered" and self._greet_timer is None:
            # Outbound: the callee speaks first; greet on their first words or after 3 s of silence.
            self._greet_timer = asyncio.create_task(self._greet_after(OUTBOUND_GREET_AFTER_S))

    async def _greet_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.dialog is not None:
            await self.dialog.greet()

    async def publish(self, s: Sentence) -> None:
        msg = speech_pb2.AgentText(
            meta=self.meta(turn=s.turn, generation=s.generation),
            sentence_seq=s.seq,
            text=s.text,
            final=s.final,
            first_token_unix_ns=s.first_token_unix_ns,
            request_unix_ns=s.request_unix_ns,
            answered_by=_ANSWERED[s.answered_by],
        )
        if s.prompt_tokens_evaluated is not None:
            msg.prompt_tokens_evaluated = s.prompt_tokens_evaluated
        self.agent_speaking = s.generation
        await self.svc.bus.publish(subjects.reply(self.call_id), msg, trace=s.seq == 0)

    async def publish_tool_record(self, msg: Any) -> None:
        """ToolCall / ToolResult on the call's tool subject (kept in PA_CALLS for call records)."""
        kind = "ToolCall" if isinstance(msg, tools_pb2.ToolCall) else "ToolResult"
        msg.meta.producer = f"llm/{self.svc.replica}"
        await self.svc.bus.publish(
            subjects.tool(self.call_id), msg, headers={subjects.TOOL_TYPE_HEADER: kind}
        )

    async def save(self, state: DialogState) -> None:
        await self.svc.save_state(self.call_id, state)

    async def action(self, name: str, result: dict[str, Any]) -> None:
        if (
            name == "transfer_to_human"
            and result.get("transferred") is True  # out of hours the tool offers a message instead
            and self.svc.agent.transfer is not None
        ):
            await self._transfer(self.svc.agent.transfer.target, "caller asked for a person")
        elif name == "end_call" and self.dialog is not None:
            self.hangup_after = self.dialog.state.generation  # after the goodbye has played

    async def on_transcript(self, tr: speech_pb2.Transcript, d: Delivery) -> None:
        if self.dialog is None:
            return
        answered = tr.meta.turn_id and tr.meta.turn_id <= self.policy_answered_turn
        if answered and tr.meta.turn_id > self.dialog.state.turn:
            if tr.final:
                await self.dialog.on_answered_turn(tr.meta.turn_id, tr.text)
            else:
                await self.dialog.drop_speculation("turn answered by policy")
            return
        if tr.preflight:
            if self._takes_turn(tr):
                await self.dialog.on_preflight(tr.meta.turn_id, tr.text, tr.speech_end_unix_ns)
            else:
                await self.dialog.drop_speculation("preflight is not a turn")
            return
        if not tr.final:
            return
        if self.dialog.cut is not None and (tr.backchannel or not any(c.isalnum() for c in tr.text)):
            # The barge-in that cut the last reply had no words behind it (noise, a cough) or
            # only a backchannel: the agent carries on where it was cut off.
            await self.dialog.drop_speculation("false interruption")
            await self.dialog.resume_cut()
            return
        if not self._takes_turn(tr):
            await self.dialog.drop_speculation("final is not a turn")
            if self.call.direction == call_pb2.DIRECTION_OUTBOUND and not self.dialog.state.generation:
                await self.dialog.greet()  # the callee's "hello?" is answered with the greeting
            return
        with telemetry.span_from(d.headers, "llm.turn", call_id=self.call_id, turn=tr.meta.turn_id):
            await self.dialog.on_user_turn(tr.meta.turn_id, tr.text)

    def _takes_turn(self, tr: speech_pb2.Transcript) -> bool:
        """Whether a final (or a preflight) is a caller turn the dialog answers: not a backchannel
        while the agent talks (or is about to), and not an outbound callee's first words, which
        the greeting answers."""
        assert self.dialog is not None
        if tr.backchannel and (self.agent_speaking is not None or self.dialog.reply is not None):
            return False  # "mm-hmm" while the agent talks is not a new turn
        return not (self.call.direction == call_pb2.DIRECTION_OUTBOUND and not self.dialog.state.generation)

    async def on_control(self, ev: control_pb2.ControlEvent, _: Delivery) -> None:
        if self.dialog is None:
            return
        kind = ev.WhichOneof("kind")
        if kind == "barge_in":
            b = ev.barge_in
            self._played(b.interrupted_generation_id)
            await self.dialog.on_barge_in(
                b.interrupted_generation_id, b.heard_sentence_seq, b.heard_text_chars
            )
        elif kind == "directive":
            await self._on_directive(ev.directive)
        elif kind == "playback_done":
            self._played(ev.playback_done.generation_id)
            await self.dialog.on_playback_done(ev.playback_done.generation_id)
            if self.transfer_after is not None and ev.playback_done.generation_id >= self.transfer_after[0]:
                await self._transfer(self.transfer_after[1], "policy escalation")
                self.transfer_after = None
            if self.hangup_after is not None and ev.playback_done.generation_id >= self.hangup_after:
                hang = control_pb2.ControlEvent(
                    meta=self.meta(),
                    hangup=control_pb2.Hangup(reason=call_pb2.END_REASON_AGENT_HANGUP, detail="agent ended"),
                )
                await self.svc.bus.publish(subjects.control(self.call_id), hang, lane=Lane.CONTROL)

    def _played(self, generation: int) -> None:
        """The edge stopped playing ``generation`` (played out or cut): the agent is silent
        unless a newer reply has been published since."""
        if self.agent_speaking is not None and generation >= self.agent_speaking:
            self.agent_speaking = None

    async def _on_directive(self, d: control_pb2.PolicyDirective) -> None:
        """Policy decided what must be said: interrupt, speak it as a new generation, then act."""
        assert self.dialog is not None
        if not d.text.strip():
            return
        if self._greet_timer is not None:
            self._greet_timer.cancel()
        self.policy_answered_turn = max(self.policy_answered_turn, d.turn_id)
        current = self.dialog.reply
        if current is not None and not current.finished:
            cancel = control_pb2.ControlEvent(
                meta=self.meta(generation=current.generation),
                cancel=control_pb2.CancelGeneration(generation_id=current.generation, reason="policy"),
            )
            await self.svc.bus.publish(subjects.control(self.call_id), cancel, lane=Lane.CONTROL)
        generation = await self.dialog.say_directive(
            d.text, answer_pending=d.action == control_pb2.DIRECTIVE_ACTION_SAY
        )
        transfer = self.svc.agent.transfer
        if d.action == control_pb2.DIRECTIVE_ACTION_SAY_AND_HANG_UP:
            self.hangup_after = generation
        elif d.action == control_pb2.DIRECTIVE_ACTION_SAY_AND_TRANSFER and (d.target or transfer is not None):
            self.transfer_after = (generation, d.target or (transfer.target if transfer else ""))
        log.info(
            "policy directive spoken",
            extra={"call_id": self.call_id, "rule": d.rule, "generation": generation},
        )

    async def _transfer(self, target: str, reason: str) -> None:
        """Ask policy to approve the transfer; it goes to the edge with policy's approval only."""
        try:
            decision = await request_transfer(
                self.svc.bus,
                self.call_id,
                target,
                kind=control_pb2.TRANSFER_KIND_BLIND,
                reason=reason,
                producer=f"llm/{self.svc.replica}",
            )
        except PhoneAgentError as exc:
            log.warning(
                "transfer not approved: policy unavailable",
                extra={"call_id": self.call_id, "error_kind": exc.kind.name},
            )
            return
        if decision.decision != policy_pb2.DECISION_ALLOW:
            log.warning("transfer denied by policy", extra={"call_id": self.call_id, "rule": decision.rule})

    async def close(self, reason: str) -> None:
        if self._greet_timer is not None:
            self._greet_timer.cancel()
            await asyncio.gather(self._greet_timer, return_exceptions=True)
        for sub in self.subs:
            await self.svc.bus.unsubscribe(sub)
        if self.dialog is not None:
            await self.dialog.close()
        if reason == CALL_ENDED:  # the conversation is not kept beyond the call
            await self.svc.forget_state(self.call_id)


class LlmService(Service):
    name = "llm"
    stage = "llm"

    def __init__(self, common: CommonSettings, settings: LlmSettings) -> None:
        super().__init__(common)
        self.settings = settings
        self.agent: Agent = load_agent(common.agent_path)
        self.dialog_config = DialogConfig(
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            filler_after_s=settings.filler_after_s,
            first_phrase_min_words=FIRST_PHRASE_MIN_WORDS,
            first_max_words=settings.first_max_words,
        )
        self.engine: LiveFirst  # the engine, serving live turns before background work
        self.executor: ToolExecutor | None = None
        self.knowledge: KnowledgeBase | None = None
        self.store: SchedulingStore | None = None
        self._kv: Any = None
        self.summaries: SummaryWorker | None = None  # post-call summary jobs from PA_WORK

    async def setup(self) -> None:
        s = self.settings
        self.engine = LiveFirst(create_engine(s.engine, **engine_options(s.engine, s)))
        await asyncio.to_thread(self.engine.load)
        self.store = await asyncio.to_thread(
            SchedulingStore.open, s.database_url, self.agent, timeout_s=db_timeout(s.tool_timeout_s)
        )
        if s.knowledge and (self.agent.knowledge or self.agent.tool_enabled("lookup_knowledge")):
            self.knowledge = await asyncio.to_thread(
                open_knowledge_base,
                list(self.agent.knowledge),
                cache_dir() / "knowledge",
                agent_passages(self.agent),
            )
        self.executor = ToolExecutor(self.agent, self.store, self.knowledge, timeout_s=s.tool_timeout_s)
        self.tasks.spawn(self._retention_loop(), "retention")
        self._kv = await streams.dialog_kv(self.bus.jetstream(), ttl_s=self.common.call_state_ttl_s)
        await self.warm_up()
        self.summaries = SummaryWorker(self.bus, self.engine)
        await self.summaries.start()
        self.add_health_check("summaries", lambda: self.summaries is None or self.summaries.healthy)
        log.info("llm ready", extra={"engine": s.engine, "model": s.model, "agent": self.agent.name})

    async def _retention_loop(self) -> None:
        """Delete appointments and messages past their retention, now and every interval (every
        replica may: the deletes are idempotent). A slow or failing round is logged; the next
        one tries again."""
        s = self.settings
        while True:
            if self.store is not None and (s.appointment_retention_days > 0 or s.message_retention_days > 0):
                try:
                    await asyncio.wait_for(
                        asyncio.to_thread(
                            self.store.purge, s.appointment_retention_days, s.message_retention_days
                        ),
                        RETENTION_TIMEOUT_S,
                    )
                except Exception as exc:
                    log.warning("appointment retention failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(s.retention_every_s)

    def prompter(self) -> Prompter:
        """What the model is told, from the agent, its appointment book and its documents."""
        return Prompter(
            self.agent, self.store, self.knowledge, documents_chars=self.settings.prompt_documents_chars
        )

    def system_prompt(self) -> str:
        """The part of the prompt that is the same for every turn of every call (cached by the engine)."""
        return self.prompter().system_prompt()

    def turn_context(self, caller_text: str) -> str:
        """Facts for one turn, kept short (see :class:`~phoneagent.llm.prompting.Prompter`)."""
        return self.prompter().turn_context(caller_text)

    async def warm_up(self) -> None:
        """Evaluate the fixed prompt prefix (persona and tool schemas) once, before the first call."""
        tools = self.executor.definitions() if self.executor else None
        messages = self.prompter().warm_up_messages()
        started = time.perf_counter()
        await self.engine.warm_up(messages, tools)
        log.info("llm prompt cache warmed", extra={"seconds": round(time.perf_counter() - started, 2)})

    async def load_state(self, call_id: str) -> DialogState | None:
        """The call's saved conversation, or None (start fresh) when there is none or it is unreadable."""
        try:
            entry = await self._kv.get(call_id)
        except Exception as exc:  # no key yet (a call this replica starts), or the bucket is down
            log.info("no dialog state", extra={"call_id": call_id, "error": type(exc).__name__})
            return None
        try:
            return DialogState.from_json(entry.value or b"{}")
        except ValueError as exc:
            log.warning(
                "dialog state unreadable, starting fresh", extra={"call_id": call_id, "why": str(exc)}
            )
            return None

    async def save_state(self, call_id: str, state: DialogState) -> None:
        try:
            await self._kv.put(call_id, state.to_json())
        except Exception as exc:
            log.warning("dialog state not saved", extra={"call_id": call_id, "error": type(exc).__name__})

    async def forget_state(self, call_id: str) -> None:
        """Purge the ended call's saved conversation (the bucket's TTL catches a missed one)."""
        if self._kv is not None:
            await streams.forget_call(self._kv, call_id)

    async def new_session(self, claim: session_pb2.SessionClaim, taken_over: bool) -> LlmCallSession:
        return LlmCallSession(self, claim, taken_over)

    async def _shutdown(self) -> None:
        """On SIGTERM the summary worker stops alongside the calls' drain, before the bus closes:
        it fetches no more jobs, and the job in hand finishes or is nak'ed within the drain timeout."""
        if self.summaries is not None:
            timeout = self.common.drain_timeout_s
            drains = [self.summaries.stop(timeout)]
            if self.sessions is not None:
                drains.append(self.sessions.drain(timeout))  # the shared shutdown's drain then finds none
            await asyncio.gather(*drains, return_exceptions=True)
        await super()._shutdown()

    async def teardown(self) -> None:
        if hasattr(self, "engine"):
            await self.engine.close()

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {
            "model": f"{self.settings.engine}:{self.settings.model}",
            "agent": self.agent.name,
        }
        if self.summaries is not None:
            out["summaries_done"] = self.summaries.done
            out["summaries_deferred"] = self.summaries.deferred
        return out


def db_timeout(tool_timeout_s: float) -> float:
    """Each database statement's limit: two tries and the pause between them end before the
    tool's own deadline, so the caller hears words without a query left running behind them."""
    return max(0.05, (tool_timeout_s - RETRY_AFTER_S) * 0.45)


def _uri_user(uri: str) -> str:
    """The user part of a SIP or tel URI (the caller's number), or the text itself when bare."""
    text = uri.strip()
    for scheme in ("sips:", "sip:", "tel:"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
            break
    return text.split("@", 1)[0].split(";", 1)[0]
