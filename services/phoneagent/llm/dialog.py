"""The dialog of one call: turns, generations, streaming replies, barge-in, tools.

Every caller turn (a final, non-backchannel transcript) starts a new **generation**: the
reply streams from the engine, is cut into sentences (the first clause goes out as soon as
it is complete) and each sentence is published at once. A barge-in for the current
generation aborts the engine request immediately, and the history keeps only what the
caller heard, as the edge reports it (sentence and character position). Tool calls are
recognised in the model's output, executed in code, and followed by a second generation
that speaks the result; when a tool runs longer than ``filler_after_s`` a short filler is
spoken first. State is saved after every change so another replica can continue the call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from phoneagent.llm.engines.base import LlmEngine
from phoneagent.llm.streaming import SentenceSplitter
from phoneagent.llm.tool_calls import (
    CONSTRAINED_MIN_TOKENS,
    TOOL_CALL_REPAIRS,
    looks_like_call,
    looks_like_json,
    maybe_tool_call,
    parse_tool_call,
    read_constrained,
    starts_tool_call,
    tool_call_schema,
)
from phoneagent.runtime import metrics
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.tasks import TaskOwner

log = logging.getLogger(__name__)

APOLOGY = "I'm sorry, something went wrong on my side. Could you say that again?"
TOOL_FAILED = "I'm sorry, I couldn't complete that just now."


@dataclass
class ToolOutcome:
    ok: bool
    result: dict[str, Any]
    spoken: str = ""
    # ``spoken`` is the complete answer (a booking confirmation, an apology): say it as it is,
    # with no second generation, so a small model cannot misstate a date the tools worked out.
    final: bool = False
    # The call does not fit what the caller said (a booking for a question): nothing ran, and
    # the model answers in words instead.
    declined: bool = False
    tool: str = ""  # the tool that ran, when the runner chose another than the model named


class ToolRunner(Protocol):
    """Executes the agent's tools in code (dates resolved in the business's time zone)."""

    def schemas(self) -> list[dict[str, Any]]: ...

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome: ...


@dataclass
class _Unconfirmed:
    """A reply the caller talked over before the edge said how much of it played: the history
    keeps all of it (``message``) until a late BargeIn cuts it or a PlaybackDone confirms it."""

    message: dict[str, Any]
    sentences: list[str]


UNCONFIRMED_KEPT = 4  # replies awaiting the edge's report; older ones are taken as heard


@dataclass
class DialogConfig:
    max_tokens: int = 160
    temperature: float = 0.3
    filler_after_s: float = 0.8
    filler_text: str = "One moment while I check."
    max_history: int = 24
    # Characters of history kept (about four per token): past this, the oldest messages go until
    # two thirds of it is left, so the engine's cached prefix is rebuilt rarely, not every turn.
    max_history_chars: int = 9000
    first_clause_min_words: int = 4
    # Finish tool calls under the tools' JSON schemas where the engine supports it.
    constrained_tools: bool = True


@dataclass
class DialogState:
    """What survives a replica change (JSON in the dialog key-value bucket)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    turn: int = 0
    generation: int = 0
    # The tool runner's own memory of the call (a booking waiting for the caller's name, what
    # the caller said and was offered), as :meth:`ToolRunner.snapshot` gives it.
    tools: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(
            {"history": self.history, "turn": self.turn, "generation": self.generation, "tools": self.tools},
            default=str,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> DialogState:
        """Read a saved state; raises ValueError (never another error) when it is not one."""
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("dialog state is not JSON") from exc
        if not isinstance(raw, dict):
            raise ValueError("dialog state is not an object")
        history, tools = _given(raw, "history", []), _given(raw, "tools", {})
        turn, generation = _given(raw, "turn", 0), _given(raw, "generation", 0)
        if not isinstance(history, list) or not all(isinstance(m, dict) for m in history):
            raise ValueError("dialog history is not a list of messages")
        if not isinstance(tools, dict):
            raise ValueError("tool state is not an object")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (turn, generation)):
            raise ValueError("turn and generation must be counts")
        return cls(history=list(history), turn=turn, generation=generation, tools=dict(tools))


def _given(raw: dict[str, Any], key: str, default: Any) -> Any:
    value = raw.get(key)
    return default if value is None else value


@dataclass
class Sentence:
    generation: int
    turn: int
    seq: int
    text: str
    final: bool
    # Wall clock (unix ns) of the generation's first model token; set on sentence 0 only, and 0
    # when no model ran (greeting, policy words, a booking resumed in code).
    first_token_unix_ns: int = 0
    # Set on sentence 0 of a reply to a caller turn: when the turn reached the dialog.
    request_unix_ns: int = 0


@dataclass
class _Reply:
    generation: int
    turn: int
    request_id: str = ""
    first_token_unix_ns: int = 0
    request_unix_ns: int = 0
    sentences: list[str] = field(default_factory=list)
    finished: bool = False  # every sentence published
    task: asyncio.Task[None] | None = None


Publish = Callable[[Sentence], Awaitable[None]]
Action = Callable[[str, dict[str, Any]], Awaitable[None]]
Save = Callable[[DialogState], Awaitable[None]]
SystemPrompt = Callable[[], str]
TurnContext = Callable[[str], str]


class Dialog:
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
        self.reply: _Reply | None = None
        self._unconfirmed: dict[int, _Unconfirmed] = {}
        self._tasks = TaskOwner(f"dialog:{call_id}")
        restore = getattr(tools, "restore", None)
        if self.state.tools and callable(restore):
            restore(self.state.tools)

    # --- events ------------------------------------------------------------------------------
    async def greet(self) -> None:
        """Say the agent's greeting as the first generation (turn 0), unless already done."""
        if self.state.generation or not self.greeting:
            return
        reply = self._new_reply(turn=0)
        await self._say(reply, self.greeting)
        await self._end(reply)
        reply.finished = True
        self._unconfirmed_until_reported(reply, await self._commit_heard(reply, len(reply.sentences), 0))

    async def on_user_turn(self, turn: int, text: str, started_at: float | None = None) -> None:
        """A final transcript: interrupt whatever is in flight and answer it."""
        text = text.strip()
        if not text:
            return
        requested = time.time_ns()
        talked_over = self.reply
        kept = await self.interrupt(None)
        if talked_over is not None:
            # The edge reports what was played only once its own ASR verdict arrives, usually
            # after this transcript: keep the reply for now and cut it when the report comes.
            self._unconfirmed_until_reported(talked_over, kept)
        self.state.turn = max(self.state.turn + 1, turn)
        # Facts for this turn (time, free slots, document passages) ride with the caller's words,
        # and stay in the history as sent: the prompt prefix then never changes between turns and
        # the engine reuses its cache instead of re-reading the whole conversation.
        note, resume = getattr(self.tools, "caller_said", None), getattr(self.tools, "resume", None)
        if callable(note):
            note(text)  # the tool runner checks the model's arguments against the caller's words
        # The caller answered a question a booking asked (a name, a time): run it again in code.
        resumed = resume(text) if callable(resume) else None
        facts = self.context(text) if self.context is not None else ""
        content = f"{facts}\nCaller: {text}" if facts else text
        self.state.history.append({"role": "user", "content": content})
        self._trim()
        await self._save()
        reply = self._new_reply(turn=self.state.turn)
        reply.request_unix_ns = requested
        reply.task = self._tasks.spawn(
            self._generate(reply, started_at or time.perf_counter(), resumed), f"gen{reply.generation}"
        )

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
        if cut is not None:
            await self._abort(cut)
            self.reply = None
        else:
            await self.interrupt(None)
        reply = self._new_reply(turn=cut.turn if cut is not None else self.state.turn)
        await self._say(reply, " ".join(text.split()))
        if cut is not None:
            reply.task = self._tasks.spawn(
                self._generate(reply, time.perf_counter()), f"gen{reply.generation}"
            )
            return reply.generation
        await self._end(reply)
        reply.finished = True
        return reply.generation

    async def on_barge_in(self, generation: int, heard_sentence_seq: int, heard_chars: int) -> None:
        reply = self.reply
        if reply is not None and reply.generation == generation:
            await self.interrupt((heard_sentence_seq, heard_chars))
            return
        late = self._unconfirmed.pop(generation, None)
        if late is not None:
            await self._cut_late(late, heard_sentence_seq, heard_chars)

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

    def _unconfirmed_until_reported(self, reply: _Reply, message: dict[str, Any] | None) -> None:
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

    async def _abort(self, reply: _Reply) -> None:
        """Stop the reply's engine request and task (what it published stays in ``sentences``)."""
        if reply.task is not None and not reply.task.done():
            if reply.request_id:
                await self.engine.abort(reply.request_id)
            reply.task.cancel()
            await asyncio.gather(reply.task, return_exceptions=True)

    async def close(self) -> None:
        reply = self.reply
        if reply is not None and reply.request_id and reply.task is not None and not reply.task.done():
            await self.engine.abort(reply.request_id)
        await self._tasks.close(timeout=2.0)

    # --- internals ------------------------------------------------------------------------------
    def _new_reply(self, turn: int) -> _Reply:
        self.state.generation += 1
        self.reply = _Reply(generation=self.state.generation, turn=turn)
        return self.reply

    async def _commit_heard(
        self, reply: _Reply, full_sentences: int, extra_chars: int
    ) -> dict[str, Any] | None:
        if self.reply is not reply:
            return None
        self.reply = None
        heard = _heard_text(reply.sentences, full_sentences, extra_chars)
        message = {"role": "assistant", "content": heard} if heard else None
        if message is not None:
            self.state.history.append(message)
            self._trim()
        await self._save()
        return message

    async def _save(self) -> None:
        snapshot = getattr(self.tools, "snapshot", None)
        if callable(snapshot):
            self.state.tools = snapshot()
        await self.save(self.state)

    def _trim(self) -> None:
        history = self.state.history
        excess = len(history) - self.config.max_history
        if excess > 0:
            del history[:excess]
        total = sum(_chars(m) for m in history)
        if total <= self.config.max_history_chars:
            return
        target = self.config.max_history_chars * 2 // 3
        while len(history) > 1 and (total > target or history[0].get("role") != "user"):
            total -= _chars(history.pop(0))  # never start with a reply or a result whose question is gone

    def _messages(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.system_prompt()}, *self.state.history]

    async def _say(self, reply: _Reply, text: str) -> None:
        """Publish one sentence of the reply at once (never held back for the next one)."""
        seq = len(reply.sentences)
        reply.sentences.append(text)
        first_token = reply.first_token_unix_ns if seq == 0 else 0
        requested = reply.request_unix_ns if seq == 0 else 0
        await self.publish(Sentence(reply.generation, reply.turn, seq, text, False, first_token, requested))

    async def _end(self, reply: _Reply) -> None:
        """Mark the end of the generation: an empty, final sentence after the last one."""
        await self.publish(Sentence(reply.generation, reply.turn, len(reply.sentences), "", True))

    async def _generate(self, reply: _Reply, started: float, resumed: dict[str, Any] | None = None) -> None:
        try:
            messages = self._messages()
            tool_call = resumed or await self._stream(reply, messages, started, with_tools=True)
            if tool_call is not None:
                await self._run_tool(reply, messages, tool_call, started)
        except asyncio.CancelledError:
            raise
        except PhoneAgentError as exc:
            log.warning("reply failed", extra={"call_id": self.call_id, "error_kind": exc.kind.name})
            await self._apology(reply)
        except Exception as exc:
            log.error("reply crashed", exc_info=exc, extra={"call_id": self.call_id})
            await self._apology(reply)
        reply.finished = True

    async def _apology(self, reply: _Reply) -> None:
        await self._say(reply, APOLOGY)
        await self._end(reply)

    async def _stream(
        self,
        reply: _Reply,
        messages: list[dict[str, Any]],
        started: float,
        *,
        with_tools: bool,
        constrain: bool = True,
    ) -> dict[str, Any] | None:
        """Stream one completion; publish sentences; return a tool call if the model made one.

        With ``constrain`` (and an engine with structured output), the free completion stops as
        soon as it starts a tool call, and the call is generated under the tools' schemas."""
        reply.request_id = f"{self.call_id}-g{reply.generation}-{len(reply.sentences)}"
        splitter = SentenceSplitter(first_clause_min_words=self.config.first_clause_min_words)
        tools = self.tools.schemas() if (with_tools and self.tools is not None) else None
        constrain = (
            constrain
            and tools is not None
            and self.config.constrained_tools
            and bool(getattr(self.engine, "structured_output", False))
        )
        buffered = ""  # held back while the output may still turn out to be a tool call
        spoke = opened = False
        first_token = True
        t0 = time.perf_counter()
        tokens = 0
        stream = self.engine.stream(
            messages,
            request_id=reply.request_id,
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
            tools=tools,
        )
        async for delta in stream:
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
                continue
            text, buffered, spoke = buffered + delta.text, "", True
            for sentence in splitter.push(text):
                await self._sentence(reply, sentence, started)
        elapsed = time.perf_counter() - t0
        if tokens and elapsed > 0:
            metrics.LLM_TOKENS_PER_SECOND.labels(engine=self.engine.name).observe(tokens / elapsed)
        if opened and tools is not None:
            await self.engine.abort(reply.request_id)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            return await self._constrained_call(reply, messages, started, tools)
        if buffered:
            call = parse_tool_call(buffered) if tools is not None else None
            if call is not None:
                TOOL_CALL_REPAIRS.labels(engine=self.engine.name, reason="unconstrained").inc()
                return call
            if looks_like_call(buffered) or (tools is None and looks_like_json(buffered)):
                # A tool call that is cut off or broken is never read out to the caller.
                log.info("unreadable tool call", extra={"call_id": self.call_id, "chars": len(buffered)})
                buffered = APOLOGY
            for sentence in splitter.push(buffered):
                await self._sentence(reply, sentence, started)
        for sentence in splitter.flush():
            await self._sentence(reply, sentence, started)
        if not reply.sentences:
            await self._say(reply, APOLOGY)
        await self._end(reply)
        return None

    async def _constrained_call(
        self, reply: _Reply, messages: list[dict[str, Any]], started: float, tools: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Generate the tool call the model began, from the start of its reply, under the schemas."""
        reply.request_id = f"{self.call_id}-g{reply.generation}-{len(reply.sentences)}-call"
        text = ""
        try:
            async for delta in self.engine.stream(
                messages,
                request_id=reply.request_id,
                max_tokens=max(self.config.max_tokens, CONSTRAINED_MIN_TOKENS),
                temperature=self.config.temperature,
                tools=tools,
                json_schema=tool_call_schema(tools),
            ):
                if delta.final:
                    break
                text += delta.text
        except PhoneAgentError as exc:
            if exc.kind.name != "INVALID_ARGUMENT":
                raise
            # The engine cannot build a grammar from these schemas: read a free-text call instead.
            TOOL_CALL_REPAIRS.labels(engine=self.engine.name, reason="no_grammar").inc()
            return await self._stream(reply, messages, started, with_tools=True, constrain=False)
        call = read_constrained(text)
        if call is not None:
            return call
        repaired = parse_tool_call(text)
        if repaired is not None:
            TOOL_CALL_REPAIRS.labels(engine=self.engine.name, reason="cut_off").inc()
            return repaired
        log.info("unreadable tool call", extra={"call_id": self.call_id, "chars": len(text)})
        await self._say(reply, APOLOGY)
        await self._end(reply)
        return None

    async def _sentence(self, reply: _Reply, text: str, started: float) -> None:
        if not text.strip():
            return
        if not reply.sentences:
            metrics.LLM_FIRST_SENTENCE_LATENCY.labels(engine=self.engine.name).observe(
                time.perf_counter() - started
            )
        await self._say(reply, text)

    async def _run_tool(
        self, reply: _Reply, messages: list[dict[str, Any]], call: dict[str, Any], started: float
    ) -> None:
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
        task = asyncio.ensure_future(self.tools.run(name, args))
        done, _ = await asyncio.wait({task}, timeout=self.config.filler_after_s)
        if not done:
            await self._say(reply, self.config.filler_text)
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
        self.state.history.append(
            {"role": "tool", "content": json.dumps({"ok": outcome.ok, **result, "say": outcome.spoken})}
        )
        await self._save()  # a replica taking the call over knows what the tool did (and asked)
        if outcome.final and outcome.spoken:
            splitter = SentenceSplitter(first_clause_min_words=self.config.first_clause_min_words)
            for sentence in [*splitter.push(outcome.spoken), *splitter.flush()]:
                await self._sentence(reply, sentence, started)
            await self._end(reply)
            return
        follow = self._messages()
        await self._stream(reply, follow, started, with_tools=False)


def _heard_text(sentences: list[str], full_sentences: int, extra_chars: int) -> str:
    """The sentences played in full, and the first ``extra_chars`` of the next one."""
    parts = sentences[:full_sentences]
    if extra_chars and full_sentences < len(sentences):
        parts.append(sentences[full_sentences][:extra_chars].rstrip() + "...")
    return " ".join(p for p in parts if p).strip()


def _acts(name: str, outcome: ToolOutcome) -> bool:
    """Whether the tool's outcome asks the call to act: a transfer only when the tool put the
    caller through (out of hours it offers a message instead), the end of the call when it ran."""
    if not outcome.ok:
        return False
    if name == "transfer_to_human":
        return outcome.result.get("transferred") is True
    return name == "end_call"


def _chars(message: dict[str, Any]) -> int:
    return len(str(message.get("content") or "")) + len(json.dumps(message.get("tool_calls") or ""))


def _compact(result: dict[str, Any]) -> dict[str, Any]:
    """A result spoken as it is, as the history keeps it: its short plain fields (status, ids,
    times), without lists and documents the caller already heard in ``say`` (a knowledge
    answer's passages are hundreds of tokens that every later turn would pay for)."""
    return {
        k: v
        for k, v in result.items()
        if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 80)
    }
