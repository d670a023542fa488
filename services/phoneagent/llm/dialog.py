"""The dialog of one call: turns, generations, streaming replies, barge-in, tools.

Every caller turn (a final, non-backchannel transcript) starts a new **generation**: the
reply streams from the engine, is cut into sentences (the first clause goes out as soon as
it is complete) and each sentence is published at once. A barge-in for the current
generation aborts the engine request immediately, and the history keeps only what the
caller heard, as the edge reports it (sentence and character position). Tool calls are
recognised in the model's output, executed in code, and followed by a second generation
that speaks the result; when a tool runs longer than ``filler_after_s`` a short filler is
spoken first. State is saved after every change so another replica can continue the call.

A preflight transcript starts a held reply that the confirming final releases (see
:mod:`phoneagent.llm.preflight`). A reply the edge cut on long caller sound before any words is
said to its end, from the sentence the caller was cut off in, when the caller's "turn" turns
out to have no words or to be only a backchannel (:meth:`Dialog.resume_cut`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from phoneagent.llm.dialog_state import (
    Action,
    DialogConfig,
    DialogState,
    Publish,
    Save,
    SystemPrompt,
    ToolRunner,
    TurnContext,
)
from phoneagent.llm.engines.base import LlmEngine
from phoneagent.llm.preflight import Speculation, count, same_words
from phoneagent.llm.replies import Replies, Reply
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.tasks import TaskOwner, with_timeout

log = logging.getLogger(__name__)


@dataclass
class _Unconfirmed:
    """A reply the caller talked over before the edge said how much of it played: the history
    keeps all of it (``message``) until a late BargeIn cuts it or a PlaybackDone confirms it."""

    message: dict[str, Any]
    sentences: list[str]


@dataclass
class _Cut:
    """A reply cut off by a barge-in that no caller turn has explained yet: ``from_seq`` is the
    sentence the caller was cut off in, ``kept`` the history message holding what was heard."""

    reply: Reply
    from_seq: int
    kept: dict[str, Any] | None


PREFILL_TIMEOUT_S = 60.0  # a prefill waits for a quiet engine, then evaluates a few hundred tokens
# A prefill of the caller's words so far waits at most this long for a quiet engine: the next
# partial transcript (every ~0.6 s of speech) or the final makes it stale.
CALLER_PREFILL_WAIT_S = 0.5
UNCONFIRMED_KEPT = 4  # replies awaiting the edge's report; older ones are taken as heard
# Introduces the facts that ride with a caller's words (a small model must not take them as
# something the caller said: "Thank you for providing the facts.").
FACTS_HEADER = "[Facts for you, not said by the caller]"


class Dialog(Replies):
    def __init__(
        self,
        call_id: str,
        engine: LlmEngine,
        *,
        system_prompt: SystemPrompt,
        greeting: str,
        publish: Publish,
        save: Save,
        tools: ToolRunner | None = None,
        action: Action | None = None,
        config: DialogConfig | None = None,
        state: DialogState | None = None,
        context: TurnContext | None = None,
    ) -> None:
        self.call_id = call_id
        self.engine = engine
        self.system_prompt = system_prompt
        self.context = context
        self.greeting = greeting
        self.publish = publish
        self.save = save
        self.tools = tools
        self.action = action
        self.config = config or DialogConfig()
        self.state = state or DialogState()
        self.reply: Reply | None = None
        self._unconfirmed: dict[int, _Unconfirmed] = {}
        self._tasks = TaskOwner(f"dialog:{call_id}")
        self.prefilling: asyncio.Task[bool] | None = None  # the last prefill (see _prefill_next)
        self._caller_prefill: asyncio.Task[bool] | None = None  # see prefill_caller
        self.caller_prefills = 0  # prefills of the caller's words so far that ran (tests, logs)
        self.speculative: Speculation | None = None  # a reply held for a preflight (see preflight.py)
        self.cut: _Cut | None = None  # the last reply, cut by a barge-in before any caller words
        self._preflights = 0
        self._directive_generation = 0  # policy's last words, and the history message holding
        self._directive_said: dict[str, Any] | None = None  # them once committed
        restore = getattr(tools, "restore", None)
        if self.state.tools and callable(restore):
            restore(self.state.tools)

    # --- events ------------------------------------------------------------------------------
    async def greet(self) -> None:
        """Say the agent's greeting as the first generation (turn 0), unless already done."""
        if self.state.generation or not self.greeting:
            return
        await self.drop_speculation("greeting")
        reply = self._new_reply(turn=0)
        await self._say(reply, self.greeting)
        await self._end(reply)
        reply.finished = True
        self._unconfirmed_until_reported(reply, await self._commit_heard(reply, len(reply.sentences), 0))
        self._prefill_next(reply)

    async def on_user_turn(self, turn: int, text: str, started_at: float | None = None) -> None:
        """A final transcript: interrupt whatever is in flight and answer it (releasing the reply
        started on its preflight when that carried the same words)."""
        text = text.strip()
        requested = time.time_ns()
        spec, self.speculative = self.speculative, None
        if text:
            self.cut = None  # a real turn: the interruption was one
        if spec is not None and spec.turn == turn and same_words(spec.text, text):
            if await self._adopt(spec, turn, requested):
                return
        elif spec is not None:
            await self._discard(spec, "final differs")
        if not text:
            return
        self._drop_caller_prefill()
        talked_over = self.reply
        kept = await self.interrupt(None)
        if talked_over is not None:
            # The edge reports what was played only once its own ASR verdict arrives, usually
            # after this transcript: keep the reply for now and cut it when the report comes.
            self._unconfirmed_until_reported(talked_over, kept)
        self.state.turn = max(self.state.turn + 1, turn)
        # Facts (the date and time, closures, matching document passages) ride with the caller's
        # words, and only those the conversation does not carry yet: the history keeps each turn
        # as sent, so the engine's cached tokens stay a prefix of the next prompt and a turn
        # evaluates little more than the caller's words.
        resumed, content = self._note_turn(text)
        self.state.history.append({"role": "user", "content": content})
        self._trim()
        await self._save()
        reply = self._new_reply(turn=self.state.turn)
        reply.request_unix_ns = requested
        reply.task = self._tasks.spawn(
            self._generate(reply, started_at or time.perf_counter(), resumed), f"gen{reply.generation}"
        )

    async def on_answered_turn(self, turn: int, text: str) -> None:
        """A final whose turn policy's words already answered: the directive (a transfer, a
        message offer, a goodbye) reached this replica before the caller's words did. The
        words join the history in their place, before the policy's words; nothing is
        generated, so nothing cuts those words short at the edge."""
        await self.drop_speculation("turn answered by policy")
        self.state.turn = max(self.state.turn + 1, turn)
        text = text.strip()
        if not text:
            return
        message = {"role": "user", "content": text}
        history = self.state.history
        said = self._directive_said
        at = next((i for i in range(len(history) - 1, -1, -1) if history[i] is said), None)
        history.insert(at if at is not None else len(history), message)
        self._trim()
        await self._save()

    async def say_directive(self, text: str, answer_pending: bool = False) -> int:
        """Policy's words: interrupt what is in flight, speak ``text`` as a new generation, return its id.

        With ``answer_pending`` (words that need no action after them, such as the recording
        notice), a reply to the caller that the words cut off is generated again right after
        them, in the same generation: the caller's question is still answered, and a newer
        generation would cut the policy's words short at the edge. What the cut-off reply had
        published is dropped from the history (the edge discards its queued audio).
        """
        current = self.reply
        cut = (
            current
            if answer_pending
            and current is not None
            and current.turn > 0
            and not current.finished
            and current.task is not None
            else None
        )
        await self.drop_speculation("policy words")
        if cut is not None:
            await self._abort(cut)
            self.reply = None
        else:
            await self.interrupt(None)
        reply = self._new_reply(turn=cut.turn if cut is not None else self.state.turn)
        self._directive_generation, self._directive_said = reply.generation, None
        await self._say(reply, " ".join(text.split()))
        if cut is not None:
            reply.task = self._tasks.spawn(
                self._generate(reply, time.perf_counter()), f"gen{reply.generation}"
            )
            return reply.generation
        await self._end(reply)
        reply.finished = True
        self._prefill_next(reply)  # the caller's next turn starts after these words
        return reply.generation

    async def on_barge_in(self, generation: int, heard_sentence_seq: int, heard_chars: int) -> None:
        reply = self.reply
        if reply is not None and reply.generation == generation:
            kept = await self.interrupt((heard_sentence_seq, heard_chars))
            if reply.finished and heard_sentence_seq < len(reply.sentences):
                # Cut before any words from the caller (the edge heard long speech): kept until
                # the caller's turn shows whether the interruption was a real one.
                self.cut = _Cut(reply, heard_sentence_seq, kept)
            return
        late = self._unconfirmed.pop(generation, None)
        if late is not None:
            await self._cut_late(late, heard_sentence_seq, heard_chars)

    async def resume_cut(self) -> int | None:
        """The interruption that cut the last reply was a false one (the caller's "turn" had no
        words, or was only a backchannel): say the rest of that reply, from the sentence the
        caller was cut off in, as a new generation. Returns it, or None when there is nothing
        to resume (no cut reply, or something was said since)."""
        cut, self.cut = self.cut, None
        if cut is None or self.reply is not None or self.speculative is not None:
            return None
        if cut.kept is not None:
            for i, message in enumerate(self.state.history):
                if message is cut.kept:
                    del self.state.history[i]  # the resumed reply's full text replaces it
                    break
        reply = self._new_reply(turn=cut.reply.turn)
        reply.sentences = cut.reply.sentences[: cut.from_seq]  # heard already: not said again
        reply.answered = cut.reply.answered
        for sentence in cut.reply.sentences[cut.from_seq :]:
            await self._say(reply, sentence)
        await self._end(reply)
        reply.finished = True
        await self._save()
        log.info(
            "reply resumed after a false interruption",
            extra={"call_id": self.call_id, "generation": reply.generation, "from_sentence": cut.from_seq},
        )
        return reply.generation

    async def on_playback_done(self, generation: int) -> None:
        self._unconfirmed.pop(generation, None)  # all of it was played: the history has it right
        reply = self.reply
        if reply is not None and reply.generation == generation and reply.finished:
            await self._commit_heard(reply, len(reply.sentences), 0)

    async def interrupt(self, heard: tuple[int, int] | None) -> dict[str, Any] | None:
        """Abort the generation in flight; keep in history only what was heard.

        ``heard`` is (sentence index, characters of it) from the edge; None when the caller
        spoke before anything was reported (the whole published text is kept for now: it was
        queued for playout, and a BargeIn the edge sends later cuts it, see
        :meth:`on_barge_in`). Returns the history message kept, if any.
        """
        reply = self.reply
        if reply is None:
            return None
        await self._abort(reply)
        if heard is None:
            return await self._commit_heard(reply, len(reply.sentences), 0)
        return await self._commit_heard(reply, heard[0], heard[1])

    def _unconfirmed_until_reported(self, reply: Reply, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        self._unconfirmed[reply.generation] = _Unconfirmed(message, list(reply.sentences))
        while len(self._unconfirmed) > UNCONFIRMED_KEPT:
            del self._unconfirmed[min(self._unconfirmed)]

    async def _cut_late(self, late: _Unconfirmed, full_sentences: int, extra_chars: int) -> None:
        """A BargeIn for a reply already in the history: keep only the part that was played."""
        heard = _heard_text(late.sentences, full_sentences, extra_chars)
        for i, message in enumerate(self.state.history):
            if message is late.message:
                if heard:
                    message["content"] = heard
                else:
                    del self.state.history[i]
                await self._save()
                return

    async def _abort(self, reply: Reply) -> None:
        """Stop the reply's engine request and task (what it published stays in ``sentences``)."""
        if reply.task is not None and not reply.task.done():
            if reply.request_id:
                await self.engine.abort(reply.request_id)
            reply.task.cancel()
            await asyncio.gather(reply.task, return_exceptions=True)

    async def close(self) -> None:
        await self.drop_speculation("call closed")
        reply = self.reply
        if reply is not None and reply.request_id and reply.task is not None and not reply.task.done():
            await self.engine.abort(reply.request_id)
        await self._tasks.close(timeout=2.0)

    # --- preemptive replies (see phoneagent.llm.preflight) -------------------------------------------
    async def on_preflight(self, turn: int, text: str, speech_end_unix_ns: int = 0) -> bool:
        """A preflight transcript: start the reply to ``text`` now and hold it (nothing is
        published, nothing enters the history, no tool runs) until :meth:`on_user_turn` confirms
        it. Returns whether a held reply is under way for it. Not started while a reply is still
        being generated: the preflight may be a caller talking over it who is not done yet."""
        text = text.strip()
        spec = self.speculative
        if spec is not None and spec.turn == turn and same_words(spec.text, text):
            return True  # the same words again: the held reply stands
        await self.drop_speculation("preflight changed")
        current = self.reply
        if not text or (current is not None and not current.finished) or self._tasks.closed:
            return False
        before = self.tools.snapshot() if self.tools is not None and hasattr(self.tools, "snapshot") else None
        resumed, content = self._note_turn(text)
        messages = self._messages()
        if current is not None and (said := _heard_text(current.sentences, len(current.sentences), 0)):
            messages.append({"role": "assistant", "content": said})  # as the confirming final keeps it
        messages.append({"role": "user", "content": content})
        self._preflights += 1
        reply = Reply(
            generation=self.state.generation + 1,
            turn=max(self.state.turn + 1, turn),
            held=[],
            confirmed=asyncio.Event(),
            tag=f"p{self._preflights}",
        )
        self.speculative = Speculation(
            reply, turn, text, content, messages, before, resumed, speech_end_unix_ns
        )
        reply.task = self._tasks.spawn(
            self._generate(reply, time.perf_counter(), resumed, messages), f"preflight{reply.generation}"
        )
        return True

    async def drop_speculation(self, why: str) -> None:
        """Throw away the held reply, if any: the caller went on, or the conversation moved."""
        spec, self.speculative = self.speculative, None
        if spec is not None:
            await self._discard(spec, why)

    async def _discard(self, spec: Speculation, why: str) -> None:
        await self._abort(spec.reply)
        restore = getattr(self.tools, "restore", None)
        if spec.tools_before is not None and callable(restore):
            restore(spec.tools_before)  # the turn it noted was never taken
        count("discarded")
        log.info(
            "preemptive reply discarded",
            extra={"call_id": self.call_id, "turn": spec.reply.turn, "why": why},
        )

    async def _adopt(self, spec: Speculation, turn: int, requested: int) -> bool:
        """The final confirmed the preflight: take the turn exactly as :meth:`on_user_turn` would,
        and release the held reply when its prompt is the one that turn gives; otherwise (the
        conversation changed meanwhile: a barge-in report cut the reply it followed) answer the
        turn afresh. Returns False when the reply is gone and the turn must be answered anew."""
        reply = spec.reply
        if reply.task is None or reply.task.done():  # a held reply waits for this: it was stopped
            await self._discard(spec, "reply stopped")
            return False
        self._drop_caller_prefill()
        talked_over = self.reply
        kept = await self.interrupt(None)
        if talked_over is not None:
            self._unconfirmed_until_reported(talked_over, kept)
        self.state.turn = max(self.state.turn + 1, turn)
        self.state.history.append({"role": "user", "content": spec.content})
        self._trim()
        await self._save()
        if self._messages() != spec.messages or self.state.generation + 1 != reply.generation:
            await self._abort(reply)
            count("discarded")
            log.info("preemptive reply discarded", extra={"call_id": self.call_id, "why": "history changed"})
            fresh = self._new_reply(turn=self.state.turn)
            fresh.request_unix_ns = requested
            fresh.task = self._tasks.spawn(
                self._generate(fresh, time.perf_counter(), spec.resumed), f"gen{fresh.generation}"
            )
            return True
        self.state.generation = reply.generation
        self.reply = reply
        reply.request_unix_ns = requested  # the turn reached the dialog now; its tokens came earlier
        count("used")
        held = reply.held or []
        if held:
            held[0].request_unix_ns = requested
        while held:
            await self.publish(held.pop(0))
        reply.held = None  # no await since the last check: nothing can slip in between
        assert reply.confirmed is not None
        reply.confirmed.set()
        return True

    def _note_turn(self, text: str) -> tuple[dict[str, Any] | None, str]:
        """Tell the tool runner what the caller said; return the tool call code resumes for it (a
        booking's missing answer) and the user message the turn adds (the words and new facts)."""
        note, resume = getattr(self.tools, "caller_said", None), getattr(self.tools, "resume", None)
        if callable(note):
            note(text)  # the tool runner checks the model's arguments against the caller's words
        # The caller answered a question a booking asked (a name, a time): run it again in code.
        resumed = resume(text) if callable(resume) else None
        return resumed, self._turn_content(text)

    def _turn_content(self, text: str) -> str:
        """The user message a caller turn of ``text`` adds: the words, after the facts the
        conversation does not carry yet."""
        facts = self._new_facts(self.context(text) if self.context is not None else "")
        return f"{FACTS_HEADER} {' '.join(facts)}\nCaller: {text}" if facts else text

    def prefill_caller(self, turn: int, text: str) -> bool:
        """A partial transcript of a caller turn this dialog has not answered yet: have the engine
        evaluate the turn as it begins so far (the facts, the words), as background work that
        the final's request preempts. The final's prompt then shares those tokens, and the
        turn evaluates only the words after the partial. Skipped while another prefill runs
        or waits, and when the engine is not quiet within ``CALLER_PREFILL_WAIT_S``. Returns
        whether a prefill started."""
        prefill = getattr(self.engine, "prefill", None)
        text = text.strip()
        if not callable(prefill) or self._tasks.closed or not text or turn <= self.state.turn:
            return False
        if self.reply is not None and not self.reply.finished:
            return False  # the caller talks over a reply: what they heard of it is not known yet
        if any(t is not None and not t.done() for t in (self.prefilling, self._caller_prefill)):
            return False
        messages = [*self._messages(), {"role": "user", "content": self._turn_content(text)}]
        tools = self.tools.schemas() if self.tools is not None else None
        self._caller_prefill = self._tasks.spawn(
            self._prefill_caller(prefill, messages, tools), f"prefill-caller{turn}"
        )
        return True

    def _drop_caller_prefill(self) -> None:
        """A final arrived (its own request evaluates what is left): a caller prefill goes."""
        if self._caller_prefill is not None:
            self._caller_prefill.cancel()
            self._caller_prefill = None

    async def _prefill_caller(self, prefill: Any, messages: list[dict[str, Any]], tools: Any) -> bool:
        ran = await self._prefill(prefill, messages, tools, CALLER_PREFILL_WAIT_S)
        self.caller_prefills += ran
        return ran

    # --- internals ------------------------------------------------------------------------------
    def _new_facts(self, facts: str) -> list[str]:
        """The fact lines that no caller message still in the history carries."""
        sent = [m["content"] for m in self.state.history if m.get("role") == "user" and m.get("content")]
        return [
            line
            for line in (raw.strip() for raw in facts.splitlines())
            if line and not any(line in str(content) for content in sent)
        ]

    def _new_reply(self, turn: int) -> Reply:
        self.cut = None  # something else is said: the cut reply is not resumed
        self.state.generation += 1
        self.reply = Reply(generation=self.state.generation, turn=turn)
        return self.reply

    async def _commit_heard(
        self, reply: Reply, full_sentences: int, extra_chars: int
    ) -> dict[str, Any] | None:
        if self.reply is not reply:
            return None
        self.reply = None
        heard = _heard_text(reply.sentences, full_sentences, extra_chars)
        message = {"role": "assistant", "content": heard} if heard else None
        if reply.generation == self._directive_generation:
            self._directive_said = message
        if message is not None:
            self.state.history.append(message)
            self._trim()
        await self._save()
        return message

    def _trim(self) -> None:
        """Past either budget (messages, characters), the oldest messages go until two thirds of
        both are left: every trim changes the start of the conversation, so the engine evaluates
        all of it again (~550 tokens, 8 s on the 0.5B model on two cores, when one message went
        per turn), and it must happen rarely."""
        history = self.state.history
        total = sum(_chars(m) for m in history)
        if len(history) <= self.config.max_history and total <= self.config.max_history_chars:
            return
        chars, count = self.config.max_history_chars * 2 // 3, self.config.max_history * 2 // 3
        while len(history) > 1 and (
            total > chars or len(history) > count or history[0].get("role") != "user"
        ):
            total -= _chars(history.pop(0))  # never start with a reply or a result whose question is gone

    async def _generate(
        self,
        reply: Reply,
        started: float,
        resumed: dict[str, Any] | None = None,
        messages: list[dict[str, Any]] | None = None,
    ) -> None:
        try:
            messages = messages or self._messages()
            tool_call = resumed or await self._stream(reply, messages, started, with_tools=True)
            if tool_call is not None:
                await self._until_confirmed(reply)  # a tool never runs on a preflight alone
                await self._run_tool(reply, messages, tool_call, started, by_model=resumed is None)
        except asyncio.CancelledError:
            raise
        except PhoneAgentError as exc:
            log.warning("reply failed", extra={"call_id": self.call_id, "error_kind": exc.kind.name})
            await self._apology(reply)
        except Exception as exc:
            log.error("reply crashed", exc_info=exc, extra={"call_id": self.call_id})
            await self._apology(reply)
        await self._until_confirmed(reply)
        reply.finished = True
        self._prefill_next(reply)

    def _prefill_next(self, reply: Reply) -> None:
        """While the caller listens, have the engine evaluate the conversation as the next turn
        will begin (this reply as heard in full, then the caller's turn opening), as background
        work that any live turn preempts: the next turn then evaluates little more than the
        caller's words, even after a reply or a tool result the model never evaluated."""
        prefill = getattr(self.engine, "prefill", None)
        if not callable(prefill) or self._tasks.closed:
            return
        messages = self._messages()
        if self.reply is reply and reply.sentences:
            messages.append(
                {"role": "assistant", "content": _heard_text(reply.sentences, len(reply.sentences), 0)}
            )
        messages.append({"role": "user", "content": ""})
        tools = self.tools.schemas() if self.tools is not None else None
        self.prefilling = self._tasks.spawn(
            self._prefill(prefill, messages, tools), f"prefill{reply.generation}"
        )

    async def _prefill(
        self, prefill: Any, messages: list[dict[str, Any]], tools: Any, wait_s: float | None = None
    ) -> bool:
        """Run a prefill; ``wait_s``: how long it may wait for a quiet engine (the engine's default)."""
        work = prefill(messages, tools) if wait_s is None else prefill(messages, tools, wait_s)
        try:
            return bool(await with_timeout(work, PREFILL_TIMEOUT_S, "prefill"))
        except PhoneAgentError as exc:  # an optimisation: the next turn evaluates it instead
            log.info("prefill skipped", extra={"call_id": self.call_id, "error_kind": exc.kind.name})
            return False


def _heard_text(sentences: list[str], full_sentences: int, extra_chars: int) -> str:
    """The sentences played in full, and the first ``extra_chars`` of the next one."""
    parts = sentences[:full_sentences]
    if extra_chars and full_sentences < len(sentences):
        parts.append(sentences[full_sentences][:extra_chars].rstrip() + "...")
    return " ".join(p for p in parts if p).strip()


def _chars(message: dict[str, Any]) -> int:
    return len(str(message.get("content") or "")) + len(json.dumps(message.get("tool_calls") or ""))
