"""How one reply is produced: stream the engine's completion into sentences, publish each at
once, recognise a tool call (constrained under the tools' schemas, or read back from free
text), run the tool and speak its result. :class:`~phoneagent.llm.dialog.Dialog` builds on this
with the call's events (turns, barge-in, what the caller heard)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from phoneagent.llm.dialog_state import (
    Action,
    Answered,
    DialogConfig,
    DialogState,
    Publish,
    Save,
    Sentence,
    SystemPrompt,
    ToolOutcome,
    ToolRunner,
)
from phoneagent.llm.engines.base import LlmEngine
from phoneagent.llm.streaming import SentenceSplitter, split_text
from phoneagent.llm.tool_calls import (
    ACTION_WITHOUT_TOOL,
    ANSWER_MIN_WORDS,
    CALL_MARKER,
    CODE_REPLIES,
    CONSTRAINED_MIN_TOKENS,
    CONTRADICTED,
    OFF_TOPIC,
    REFUSALS,
    TEMPLATE_LEAKS,
    TOOL_CALL_REPAIRS,
    UNANSWERED,
    UNBACKED_CLAIMS,
    answer_kind,
    asks_caller,
    call_prefix,
    claims_done_action,
    gives,
    leaks_template,
    looks_like_call,
    looks_like_json,
    maybe_tool_call,
    parse_tool_call,
    plain_words,
    read_constrained,
    refuses,
    starts_tool_call,
    tool_call_schema,
    uses_passage,
    written_as_code,
)
from phoneagent.llm.tools import ACTIONS
from phoneagent.runtime import metrics
from phoneagent.runtime.errors import PhoneAgentError

log = logging.getLogger(__name__)

APOLOGY = "I'm sorry, something went wrong on my side. Could you say that again?"
TOOL_FAILED = "I'm sorry, I couldn't complete that just now."


@dataclass
class Reply:
    generation: int
    turn: int
    request_id: str = ""
    first_token_unix_ns: int = 0
    request_unix_ns: int = 0
    sentences: list[str] = field(default_factory=list)
    finished: bool = False  # every sentence published
    task: asyncio.Task[None] | None = None
    # How the reply answers (the tag its sentences carry, see :class:`Answered`): code until a
    # model request starts, and set again as the reply takes a tool or apology path.
    answered: Answered = Answered.CODE
    # Prompt tokens the engine evaluated over the reply's model requests; None when one of
    # them did not say (an engine without the figure) or no model ran.
    prompt_evaluated: int | None = None
    prompt_unknown: bool = False
    # A reply started on a preflight transcript (see :mod:`phoneagent.llm.preflight`): its
    # sentences wait in ``held`` and its tools wait on ``confirmed`` until the final confirms the
    # turn; ``held`` is None once they go out as they come. ``tag`` keeps its engine request ids
    # apart from those of a reply that later takes the same generation id.
    held: list[Sentence] | None = None
    filled: bool = False  # the filler was said (see Replies._lookup_instead)
    # A tool that booked, moved or cancelled, or read the caller's bookings, succeeded in this
    # reply: its answer may say a booking is made (see Replies._stream).
    backed: bool = False
    confirmed: asyncio.Event | None = None
    tag: str = ""
    parked: bool = False  # waiting for the confirmation, with a tool to run or its end reached

    def count_prompt(self, evaluated: int | None) -> None:
        """One model request of this reply evaluated ``evaluated`` prompt tokens (None: unknown)."""
        if evaluated is None:
            self.prompt_unknown = True
            return
        self.prompt_evaluated = (self.prompt_evaluated or 0) + evaluated

    @property
    def prompt_tokens_evaluated(self) -> int | None:
        return None if self.prompt_unknown else self.prompt_evaluated


class Replies:
    """The reply-producing half of a dialog (its attributes are set by ``Dialog.__init__``)."""

    call_id: str
    engine: LlmEngine
    system_prompt: SystemPrompt
    publish: Publish
    save: Save
    tools: ToolRunner | None
    action: Action | None
    config: DialogConfig
    state: DialogState

    async def _save(self) -> None:
        snapshot = getattr(self.tools, "snapshot", None)
        if callable(snapshot):
            self.state.tools = snapshot()
        await self.save(self.state)

    def _messages(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.system_prompt()}, *self.state.history]

    async def _say(self, reply: Reply, text: str, how: Answered | None = None) -> None:
        """Publish one sentence of the reply at once (never held back for the next one); ``how``
        tags words that are not the reply's own answer (a filler while a tool runs)."""
        seq = len(reply.sentences)
        reply.sentences.append(text)
        first_token = reply.first_token_unix_ns if seq == 0 else 0
        requested = reply.request_unix_ns if seq == 0 else 0
        await self._emit(
            reply,
            Sentence(
                reply.generation,
                reply.turn,
                seq,
                text,
                False,
                first_token,
                requested,
                answered_by=how or reply.answered,
            ),
        )

    async def _end(self, reply: Reply) -> None:
        """Mark the end of the generation: an empty, final sentence after the last one, carrying
        how the generation answered and the prompt tokens its model requests evaluated."""
        await self._emit(
            reply,
            Sentence(
                reply.generation,
                reply.turn,
                len(reply.sentences),
                "",
                True,
                answered_by=reply.answered,
                prompt_tokens_evaluated=reply.prompt_tokens_evaluated,
            ),
        )

    async def _emit(self, reply: Reply, sentence: Sentence) -> None:
        """Publish ``sentence``, or hold it while the reply's turn is not confirmed."""
        if reply.held is not None:
            reply.held.append(sentence)
            return
        await self.publish(sentence)

    async def _until_confirmed(self, reply: Reply) -> None:
        """Wait until the reply's turn is confirmed (at once for a reply to a final): nothing with
        a side effect (a tool, the next turn's prefill) runs for a turn the caller may not take."""
        if reply.confirmed is not None and not reply.confirmed.is_set():
            reply.parked = True
            try:
                await reply.confirmed.wait()
            finally:
                reply.parked = False

    async def _apology(self, reply: Reply) -> None:
        reply.answered = Answered.FALLBACK
        await self._say(reply, APOLOGY)
        await self._end(reply)

    async def _stream(
        self,
        reply: Reply,
        messages: list[dict[str, Any]],
        started: float,
        *,
        with_tools: bool,
        constrain: bool = True,
        fallback: str = "",
        cover: Sequence[str] = (),
    ) -> dict[str, Any] | None:
        """Stream one completion; publish sentences; return a tool call if the model made one.

        With ``constrain`` (and an engine with structured output), the free completion stops as
        soon as it starts a tool call, and the call is finished under the tools' schemas: on an
        engine that continues a reply, from where the free completion stopped.
        Without ``with_tools`` (the answer after a tool ran) the prompt still lists the tools, so
        that it begins as the engine's cached prefix does, but a tool call or JSON in the output
        is never run nor spoken: ``fallback`` is said instead (an apology without one). Each of
        ``cover`` (the passages for the parts of a two-part question) that the answer used none
        of is said after it, as the documents word it.

        A constrained reply that says a booking was made, moved or cancelled (no tool has run in
        its turn yet) is not said from there on: the model writes the tool call instead, and the
        tool's outcome is what the caller hears (a small model restates its last confirmation
        with the new time and nothing is booked)."""
        reply.request_id = f"{self.call_id}-g{reply.generation}{reply.tag}-{len(reply.sentences)}"
        splitter = SentenceSplitter(
            first_clause_min_words=self.config.first_clause_min_words,
            first_phrase_min_words=self.config.first_phrase_min_words,
            first_max_words=self.config.first_max_words or None,
        )
        tools = self.tools.schemas() if self.tools is not None else None
        constrain = (
            constrain
            and with_tools
            and tools is not None
            and self.config.constrained_tools
            and bool(getattr(self.engine, "structured_output", False))
        )
        buffered = ""  # held back while the output may still turn out to be a tool call
        spoke = opened = claimed = leaked = refused = stopped = False
        # The caller asked for a booking, a move or a cancellation: a reply that begins with
        # neither the tool call nor a question to the caller is not said.
        action_due = getattr(self.tools, "action_due", None)
        due = constrain and callable(action_due) and bool(action_due())
        held = ""  # a confirmation that repeats a tool's words, kept until its sentence is whole
        # A sentence that says the opposite of the documents: the knowledge tool's call to make
        # instead (the model answers again from its passages), or None.
        lookup: dict[str, Any] | None = None
        check = getattr(self.tools, "contradicted", None)
        knowledge_call = getattr(self.tools, "knowledge_call", None)
        # The caller asked when the practice opens or what something costs: the first sentence
        # that says something holds a time (an amount), or the knowledge tool answers instead.
        pending = answer_kind(self._caller_words()) if with_tools and callable(knowledge_call) else None
        unanswered = ""  # the sentence so far, held back while it may still give what is pending

        def look_up(why: str) -> dict[str, Any] | None:
            """The knowledge tool's call, to make in place of a sentence that is not said (on the
            first completion of a turn, where the agent has the tool); None otherwise."""
            log.info("reply %s: not said", why, extra={"call_id": self.call_id})
            return knowledge_call() if with_tools and callable(knowledge_call) else None

        async def vetted(sentence: str, end: bool = False) -> bool:
            """Say ``sentence``, unless (on a reply that may still call a tool) it says a booking
            was done that no tool's words in the conversation say, or it begins a reply to a
            caller who asked for an action (``due``) with neither the call nor a question: False
            then, nothing said. The chat template's own text is never said (``leaked``). A
            sentence that says the opposite of the documents is not said either: the first
            completion of a turn makes way for the knowledge tool (``lookup``, False), the answer
            after a tool has the documents' statement said in its place. So does a first
            sentence without the time or amount the caller asked for (``pending``), or one off
            the caller's topic (:meth:`_off_topic`)."""
            nonlocal held, leaked, lookup, refused, pending, unanswered
            if leaked or leaks_template(sentence):
                leaked = True  # the chat template's own text: nothing more of this completion is said
                return True
            if written_as_code(sentence):
                lookup = look_up("written as code")
                CODE_REPLIES.labels(engine=self.engine.name, outcome="lookup" if lookup else "dropped").inc()
                return lookup is None
            if pending is not None and (sentence.strip() or unanswered):
                # Judged a whole sentence at a time: a first clause without the time ("We are
                # open on Monday") is held until the rest of its sentence ("from 8 to 5.") says it.
                so_far = f"{unanswered} {sentence}".strip()
                if gives(pending, so_far) or asks_caller(so_far, self._caller_words()):
                    pending, unanswered, sentence = None, "", so_far
                elif not (end or _SENTENCE_END.search(so_far)):
                    unanswered = so_far
                    return True
                elif len(so_far.split()) < ANSWER_MIN_WORDS:
                    unanswered, sentence = "", so_far  # "Sure!": the answer may come next
                else:
                    lookup = look_up("lacks what was asked")
                    if lookup is not None:
                        UNANSWERED.labels(engine=self.engine.name, kind=pending).inc()
                        return False
                    pending, unanswered, sentence = None, "", so_far
            statement = (
                check(sentence, strict=not with_tools) if callable(check) and sentence.strip() else None
            )
            if statement is not None:
                lookup = look_up("contradicts the documents")
                CONTRADICTED.labels(
                    engine=self.engine.name, outcome="lookup" if lookup else "statement"
                ).inc()
                if lookup is not None:
                    return False
                await self._say(reply, statement, Answered.CODE)
                return True
            # The whole sentence so far: its first clause went out on its own ("The bus that goes").
            # Not where the caller asked for a booking, a move or a cancellation: a tool call is due.
            if with_tools and not due and sentence.strip() and callable(knowledge_call):
                reason = await self._off_topic(_open(reply, sentence))
                lookup = look_up("off the caller's topic") if reason else None
                if lookup is not None:
                    OFF_TOPIC.labels(engine=self.engine.name, reason=reason).inc()
                    return False
            if refuses(sentence):
                # A bare refusal helps no caller (a small model's reply to a toothache): on a reply
                # that may call a tool the model writes the call instead; otherwise it is dropped.
                instead = constrain and tools is not None
                REFUSALS.labels(engine=self.engine.name, outcome="tool" if instead else "dropped").inc()
                log.info("refusal: not said", extra={"call_id": self.call_id})
                refused = True
                return not instead
            if not (constrain and tools is not None):
                if (
                    not with_tools
                    and not reply.backed
                    and sentence.strip()
                    and claims_done_action(_open(reply, sentence))
                    and not self._restates_tool(sentence)
                ):
                    # The answer after a tool that booked, moved and cancelled nothing says one
                    # was done: the caller would hang up believing it.
                    UNBACKED_CLAIMS.labels(engine=self.engine.name, when="after_tool").inc()
                    log.info("unbacked claim after a tool: not said", extra={"call_id": self.call_id})
                    return True
                await self._sentence(reply, sentence, started)  # a blank one is skipped there
                return True
            text = f"{held} {sentence}".strip() if held else sentence
            before = "" if held or not reply.sentences else reply.sentences[-1]
            if not text or not claims_done_action(f"{before} {text}"):
                if due and text and not reply.sentences and not asks_caller(text, self._caller_words()):
                    ACTION_WITHOUT_TOOL.labels(engine=self.engine.name).inc()
                    log.info(
                        "action without a tool: the model writes the call", extra={"call_id": self.call_id}
                    )
                    return False
                held = ""
                await self._sentence(reply, text, started)
                return True
            if not self._restates_tool(text):
                UNBACKED_CLAIMS.labels(engine=self.engine.name, when="before_tool").inc()
                log.info("unbacked claim: the model writes the tool call", extra={"call_id": self.call_id})
                return False
            held = "" if end or _SENTENCE_END.search(text) else text
            if not held:
                await self._sentence(reply, text, started)
            return True

        first_token = True
        t0 = time.perf_counter()
        tokens = 0
        evaluated: int | None = None
        reply.answered = Answered.MODEL
        stream = self.engine.stream(
            messages,
            request_id=reply.request_id,
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
            tools=tools,
        )
        async for delta in stream:
            if delta.prompt_evaluated_tokens is not None:
                evaluated = delta.prompt_evaluated_tokens
            if delta.final:
                tokens = delta.completion_tokens or tokens
                break
            if first_token:
                first_token = False
                if not reply.first_token_unix_ns:
                    reply.first_token_unix_ns = time.time_ns()
                metrics.LLM_FIRST_TOKEN_LATENCY.labels(engine=self.engine.name).observe(
                    time.perf_counter() - started
                )
            tokens += 1
            # Held back at the start of every completion (a follow-up too: a small model may echo
            # the tool result as JSON), and never spoken if it turns out to be JSON.
            if (buffered or not spoke) and maybe_tool_call(buffered + delta.text):
                buffered += delta.text
                if constrain and starts_tool_call(buffered):
                    opened = True
                    break
                if not with_tools and starts_tool_call(buffered):
                    # The answer after a tool began another call: it is never run nor said, so
                    # the rest is not waited for (the 0.5B model wrote ~490 characters of JSON
                    # after a knowledge lookup, five seconds of decoding on CPU).
                    stopped = True
                    break
                continue
            text, buffered, spoke = buffered + delta.text, "", True
            for sentence in splitter.push(text):
                if not await vetted(sentence):
                    claimed = True
                    break
            if claimed or leaked:
                break
        reply.count_prompt(evaluated)
        elapsed = time.perf_counter() - t0
        if tokens and elapsed > 0:
            metrics.LLM_TOKENS_PER_SECOND.labels(engine=self.engine.name).observe(tokens / elapsed)
        if leaked or stopped or ((opened or claimed) and tools is not None):
            await self.engine.abort(reply.request_id)  # the rest of this completion is not wanted
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if leaked:
            # A model that writes its prompt's tool preamble ("You may call one or more functions
            # ...", the 1.5B model after a refused booking) is stopped; the caller hears an
            # apology, or the tool's words, when nothing was said before it.
            TEMPLATE_LEAKS.labels(engine=self.engine.name).inc()
            log.warning("template text in a reply: not said", extra={"call_id": self.call_id})
            if not reply.sentences:
                reply.answered = Answered.FALLBACK
                await self._say(reply, fallback or APOLOGY)
            await self._end(reply)
            return None
        if lookup is not None:
            return await self._lookup_instead(reply, lookup)
        if (opened or claimed) and tools is not None:
            return await self._call_instead(
                reply, messages, started, tools, buffered if opened else CALL_MARKER
            )
        if buffered:
            call = parse_tool_call(buffered) if (with_tools and tools is not None) else None
            if call is not None:
                TOOL_CALL_REPAIRS.labels(engine=self.engine.name, reason="unconstrained").inc()
                return call
            if stopped or looks_like_call(buffered) or (not with_tools and looks_like_json(buffered)):
                # A tool call that is cut off or broken, or one where an answer was due, is never
                # read out to the caller.
                log.info("unreadable tool call", extra={"call_id": self.call_id, "chars": len(buffered)})
                if fallback:
                    metrics.LLM_ANSWER_FALLBACKS.labels(engine=self.engine.name).inc()
                buffered, reply.answered = fallback or APOLOGY, Answered.FALLBACK
            for sentence in splitter.push(buffered):
                if not await vetted(sentence) and tools is not None:
                    if lookup is not None:
                        return await self._lookup_instead(reply, lookup)
                    return await self._call_instead(reply, messages, started, tools, CALL_MARKER)
        for sentence in [*splitter.flush(), ""]:  # "": what is held back goes out at the end
            if not await vetted(sentence, end=True) and tools is not None:
                if lookup is not None:
                    return await self._lookup_instead(reply, lookup)
                return await self._call_instead(reply, messages, started, tools, CALL_MARKER)
        if not reply.sentences and constrain and tools is not None:
            # The model wrote nothing (the 0.5B model ended its reply at once when a booking was
            # asked for again, and the caller heard the apology): where the caller asked for an
            # action it writes the tool call, otherwise the knowledge tool answers.
            instead = None if due else look_up("empty")
            EMPTY_REPLIES.labels(
                engine=self.engine.name, outcome="tool" if due else ("lookup" if instead else "apology")
            ).inc()
            if due:
                return await self._call_instead(reply, messages, started, tools, CALL_MARKER)
            if instead is not None:
                return await self._lookup_instead(reply, instead)
        if not reply.sentences:
            # Nothing the model wrote was said (a bare refusal after a booking that failed): the
            # tool's own words, where a tool ran, else the apology.
            reply.answered = Answered.FALLBACK
            await self._say(reply, fallback or APOLOGY)
        elif refused and not _SENTENCE_END.search(reply.sentences[-1]):
            reply.answered = Answered.FALLBACK  # only a refusal's first clause ("I'm sorry,") was said
            await self._say(reply, fallback or APOLOGY)
        await self._complete(reply, cover)
        await self._end(reply)
        return None

    async def _complete(self, reply: Reply, cover: Sequence[str]) -> None:
        """Say each passage of ``cover`` whose words the reply did not use: to "Do you do
        whitening and how much notice do I need to give to cancel?" the 0.5B model read out the
        prices paragraph alone, and the cancellation paragraph was never heard."""
        said = " ".join(reply.sentences)
        for passage in cover:
            if uses_passage(said, passage):
                continue
            UNCOVERED_PARTS.labels(engine=self.engine.name).inc()
            for sentence in split_text(passage, first_clause_min_words=self.config.first_clause_min_words):
                await self._say(reply, sentence, Answered.CODE)
            said = f"{said} {passage}"

    async def _lookup_instead(self, reply: Reply, call: dict[str, Any]) -> dict[str, Any]:
        """``call`` (the knowledge tool) in place of a sentence that was not said. When that
        sentence's first phrase already went out ("The bus that goes"), the filler is said at
        once: the caller does not hear the phrase break off into the lookup and the answer's
        prompt (two seconds and more on CPU; the scripted caller hung up)."""
        if reply.sentences and not _SENTENCE_END.search(reply.sentences[-1]):
            await self._say(reply, self.config.filler_text, Answered.CODE)
            reply.filled = True
        return call

    async def _off_topic(self, sentence: str) -> str:
        """Why ``sentence`` is off the caller's topic ("name", "passage"; see the tools'
        ``misplaced`` and ``off_topic``), or ""."""
        misplaced = getattr(self.tools, "misplaced", None)
        if callable(misplaced) and misplaced(sentence):
            return "name"
        off_topic = getattr(self.tools, "off_topic", None)
        if callable(off_topic) and await off_topic(sentence):
            return "passage"
        return ""

    def _caller_words(self) -> str:
        said = getattr(self.tools, "said", None)
        return said[-1] if isinstance(said, list) and said and isinstance(said[-1], str) else ""

    def _restates_tool(self, text: str) -> bool:
        """Whether ``text`` repeats words a tool result in the conversation gave ("Yes, book it"
        after the booking was made: the model says again what the booking tool said)."""
        said = plain_words(text)
        return bool(said) and any(
            said in plain_words(str(m.get("content") or ""))
            for m in self.state.history
            if m.get("role") == "tool"
        )

    async def _call_instead(
        self,
        reply: Reply,
        messages: list[dict[str, Any]],
        started: float,
        tools: list[dict[str, Any]],
        written: str,
    ) -> dict[str, Any] | None:
        """The tool call, under the schemas, in place of the free completion: it goes on after
        ``written`` (the opener the model wrote, or Qwen's marker for a booking it claimed)."""
        prefix = call_prefix(written) if getattr(self.engine, "continues_reply", False) else ""
        return await self._constrained_call(
            reply, messages, started, tools, self._callable(tools), prefix=prefix
        )

    def _callable(self, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The tools the grammar offers now (the runner may narrow the prompt's list)."""
        narrow = getattr(self.tools, "callable_schemas", None)
        return narrow() if callable(narrow) else tools

    async def _constrained_call(
        self,
        reply: Reply,
        messages: list[dict[str, Any]],
        started: float,
        tools: list[dict[str, Any]],
        callable_tools: list[dict[str, Any]] | None = None,
        *,
        prefix: str = "",
    ) -> dict[str, Any] | None:
        """Generate the tool call the model began under the schemas of ``callable_tools`` (all of
        ``tools`` when not given); the prompt lists ``tools``. With ``prefix`` (what the free
        completion wrote before the call's JSON object, on an engine that continues a reply) the
        same reply goes on after it; without, the call is generated from the start of the reply."""
        reply.request_id = f"{self.call_id}-g{reply.generation}{reply.tag}-{len(reply.sentences)}-call"
        text = ""
        evaluated: int | None = None
        continued = {"assistant_prefix": prefix} if prefix else {}
        try:
            async for delta in self.engine.stream(
                messages,
                request_id=reply.request_id,
                max_tokens=max(self.config.max_tokens, CONSTRAINED_MIN_TOKENS),
                temperature=self.config.temperature,
                tools=tools,
                json_schema=tool_call_schema(callable_tools or tools),
                **continued,
            ):
                if delta.prompt_evaluated_tokens is not None:
                    evaluated = delta.prompt_evaluated_tokens
                if delta.final:
                    break
                text += delta.text
        except PhoneAgentError as exc:
            if exc.kind.name != "INVALID_ARGUMENT":
                raise
            # The engine cannot build a grammar from these schemas: read a free-text call instead.
            TOOL_CALL_REPAIRS.labels(engine=self.engine.name, reason="no_grammar").inc()
            return await self._stream(reply, messages, started, with_tools=True, constrain=False)
        reply.count_prompt(evaluated)
        call = read_constrained(text)
        if call is not None:
            return call
        repaired = parse_tool_call(text)
        if repaired is not None:
            TOOL_CALL_REPAIRS.labels(engine=self.engine.name, reason="cut_off").inc()
            return repaired
        log.info("unreadable tool call", extra={"call_id": self.call_id, "chars": len(text)})
        await self._apology(reply)
        return None

    async def _sentence(self, reply: Reply, text: str, started: float) -> None:
        if not text.strip():
            return
        if not reply.sentences:
            metrics.LLM_FIRST_SENTENCE_LATENCY.labels(engine=self.engine.name).observe(
                time.perf_counter() - started
            )
        await self._say(reply, text)

    async def _run_tool(
        self,
        reply: Reply,
        messages: list[dict[str, Any]],
        call: dict[str, Any],
        started: float,
        *,
        by_model: bool,
    ) -> None:
        """Run the tool call (the model's, or one code resumed without the model) and speak its
        outcome as it is, or have the model answer from it."""
        reply.answered = Answered.MODEL_TOOL if by_model else Answered.CODE
        name = str(call.get("name", ""))
        args = call.get("arguments") or {}
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = {}
        if self.tools is None or not isinstance(args, dict):
            await self._say(reply, TOOL_FAILED)
            await self._end(reply)
            return
        # The caller heard the reply begin ("I can help you with that."): the filler is said when
        # nothing more comes for filler_after_s, the answer's prompt included, not only the tool's
        # own run (the scripted caller hung up in that silence). A reply that has said nothing
        # yet gets it only for a slow tool: its first words are what the caller waits for.
        timer = asyncio.ensure_future(self._fill(reply)) if reply.sentences else None
        try:
            await self._run_tool_for(reply, messages, name, args, started)
        finally:
            if timer is not None:
                timer.cancel()

    async def _fill(self, reply: Reply) -> None:
        """Say the filler once ``filler_after_s`` passed with nothing more said in ``reply``."""
        said = len(reply.sentences)
        await asyncio.sleep(self.config.filler_after_s)
        if len(reply.sentences) == said and not reply.filled and not reply.finished:
            reply.filled = True
            await self._say(reply, self.config.filler_text, Answered.CODE)

    async def _run_tool_for(
        self, reply: Reply, messages: list[dict[str, Any]], name: str, args: dict[str, Any], started: float
    ) -> None:
        assert self.tools is not None
        task = asyncio.ensure_future(self.tools.run(name, args))
        done, _ = await asyncio.wait({task}, timeout=self.config.filler_after_s)
        if not done and not reply.filled:
            reply.filled = True
            await self._say(reply, self.config.filler_text, Answered.CODE)
        try:
            outcome = await task
        except Exception as exc:
            log.warning(
                "tool crashed", extra={"call_id": self.call_id, "tool": name, "error": type(exc).__name__}
            )
            outcome = ToolOutcome(ok=False, result={"error": "tool failed"}, spoken=TOOL_FAILED, final=True)
        if outcome.declined:
            log.info("tool call declined", extra={"call_id": self.call_id, "tool": name})
            await self._stream(reply, messages, started, with_tools=False)
            return
        name = outcome.tool or name
        log.info("tool ran", extra={"call_id": self.call_id, "tool": name, "ok": outcome.ok})
        reply.backed = reply.backed or (outcome.ok and name in BACKS_CLAIMS)
        if self.action is not None and _acts(name, outcome):
            await self.action(name, outcome.result)
        self.state.history.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                ],
            }
        )
        result = _compact(outcome.result) if outcome.final else outcome.result
        content = outcome.for_model or json.dumps(
            {"ok": outcome.ok, **result, **({"say": outcome.spoken} if outcome.spoken else {})}
        )
        self.state.history.append({"role": "tool", "content": content})
        await self._save()  # a replica taking the call over knows what the tool did (and asked)
        if outcome.final and outcome.spoken:
            words = self.config.first_clause_min_words
            for sentence in split_text(outcome.spoken, first_clause_min_words=words):
                await self._sentence(reply, sentence, started)
            await self._end(reply)
            return
        follow = self._messages()
        passages = outcome.result.get("passages") if outcome.result.get("parts") else None
        cover = [p for p in passages if isinstance(p, str)] if isinstance(passages, list) else []
        await self._stream(reply, follow, started, with_tools=False, fallback=outcome.spoken, cover=cover)


UNCOVERED_PARTS = Counter(
    "pa_llm_uncovered_parts_total",
    "Answers to a question in two parts that used none of one part's passage from the knowledge "
    "tool: the passage was said after the answer, as the documents word it.",
    ["engine"],
)
EMPTY_REPLIES = Counter(
    "pa_llm_empty_replies_total",
    "First completions of a turn in which the model wrote nothing to say: the model wrote the "
    "tool call where the caller asked for a booking, a move or a cancellation (outcome=tool), the "
    "knowledge tool answered (outcome=lookup), or the apology was said (outcome=apology).",
    ["engine", "outcome"],
)
_SENTENCE_END = re.compile(r"[.!?][\"')]*\s*$")
# Tools whose success backs "you're booked", "it's cancelled" in the answer after them.
BACKS_CLAIMS = ACTIONS | {"find_appointments"}


def _open(reply: Reply, sentence: str) -> str:
    """``sentence`` after the pieces of its sentence that ``reply`` has already said."""
    said: list[str] = []
    for piece in reversed(reply.sentences):
        if _SENTENCE_END.search(piece):
            break
        said.insert(0, piece)
    return " ".join([*said, sentence]).strip()


def _acts(name: str, outcome: ToolOutcome) -> bool:
    """Whether the tool's outcome asks the call to act: a transfer only when the tool put the
    caller through (out of hours it offers a message instead), the end of the call when it ran."""
    if not outcome.ok:
        return False
    if name == "transfer_to_human":
        return outcome.result.get("transferred") is True
    return name == "end_call"


def _compact(result: dict[str, Any]) -> dict[str, Any]:
    """A result spoken as it is, as the history keeps it: its short plain fields (status, ids,
    times), without lists and documents the caller already heard in ``say`` (a knowledge
    answer's passages are hundreds of tokens that every later turn would pay for)."""
    return {
        k: v
        for k, v in result.items()
        if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 80)
    }
