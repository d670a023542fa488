"""The dialog's view of the agent's tools for one call: arguments checked against what the caller
said, a booking's missing answer asked for and resumed in code, each call and result published
for the call record, and exact tool answers spoken as they are."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from phoneagent.agents.agent import read_documents
from phoneagent.llm.dialog_state import ToolOutcome
from phoneagent.llm.domain.calendar_facts import HOURS_SOURCE, asks_for_hours
from phoneagent.llm.domain.dates import resolve
from phoneagent.llm.domain.document_claims import DocumentClaims
from phoneagent.llm.domain.knowledge import KnowledgeBase
from phoneagent.llm.domain.tool_handlers import question_parts
from phoneagent.llm.domain.tool_result import CallContext, ToolResult
from phoneagent.llm.domain.tool_schemas import BIRTH_DATE
from phoneagent.llm.domain.tools import ToolExecutor
from phoneagent.llm.domain.verification import read_birth_date, read_reference, spoken_digits
from phoneagent.llm.prompting import (
    Normalised,
    answers,
    caller_name,
    close_to_best,
    normalise_arguments,
    takes_leave,
    wants_appointment,
)
from phoneagent.llm.tool_calls import plain_words
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.meta import new_meta
from phoneagent.v1 import tools_pb2

log = logging.getLogger(__name__)
APPOINTMENT_TOOLS = frozenset(
    {"check_availability", "book_appointment", "find_appointments", "move_appointment", "cancel_appointment"}
)
SPOKEN_AS_IS = frozenset(
    {
        "check_availability",
        "book_appointment",
        "find_appointments",
        "move_appointment",
        "cancel_appointment",
        "transfer_to_human",
        "take_message",
        "end_call",
    }
)
ACTIONS = frozenset({"book_appointment", "move_appointment", "cancel_appointment"})
# A caller asking for one of ACTIONS: "book it", "can you move it to Thursday?", "reschedule",
# "could we do Thursday at two instead?", "can I come in Wednesday at eleven?".
_ACTION = re.compile(
    r"\b(?:book|schedule|reserve|move|reschedule|change (?:it|my appointment|the appointment|the time)|"
    r"push it|put me (?:in|down)|instead|come in|fit me in|get me in)\b",
    re.I,
)
# A request to cancel, not a question about cancelling ("what happens if I cancel the appointment late?").
_CANCEL = re.compile(
    r"\b(?:please|can you|could you|would you|(?:i|we) (?:need|want|have|would like|'d like) to)\s+cancel\b"
    r"|^\W*(?:(?:yes|yeah|ok|okay|sorry)\W+)?cancel\b|\bcancel (?:it|that)\b",
    re.I,
)
# Tools that need the caller's booking reference (see phoneagent.llm.domain.booking_access).
NEEDS_REFERENCE = frozenset({"find_appointments", "move_appointment", "cancel_appointment"})
SECRETS = ("reference", BIRTH_DATE)  # never in the call record
ON_TOPIC_PASSAGES = 2  # a reply may use the words of the paragraphs that best match the caller's words
OFF_TOPIC_WORDS = 3  # a reply sentence with this many document words from other paragraphs ...
OFF_TOPIC_SHARE = 0.6  # ... and this share of its document words is off the caller's topic


class Tools:
    """The dialog's view of the agent's tools for one call."""

    def __init__(
        self,
        executor: ToolExecutor,
        ctx: CallContext,
        clock: Callable[[], datetime] | None = None,
        record: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self.executor = executor
        self.ctx = ctx
        self.record = record  # publishes ToolCall / ToolResult for the call record
        self.clock = clock or (lambda: datetime.now(UTC))
        self.said: list[str] = []  # the caller's recent turns, to check the model's arguments against
        self.offered: list[str] = []  # what the tools recently told the caller
        self.pending: tuple[str, dict[str, Any], tuple[str, ...]] | None = None  # a booking asked about
        self.turns = 0  # caller turns so far
        self.acted_turn = -1  # the caller turn a booking, move or cancellation last succeeded on
        # The caller's latest words, and the document words of the passages that best match them.
        self._matched: tuple[str, frozenset[str]] | None = None

    def schemas(self) -> list[dict[str, Any]]:
        return self.executor.definitions()

    def contradicted(self, sentence: str, strict: bool = False) -> str | None:
        """The statement of the agent's documents that ``sentence`` says the opposite of
        (:mod:`~phoneagent.llm.domain.document_claims`), or None."""
        found = _claims(self.executor.agent.knowledge).contradicted(sentence, strict=strict)
        return found.text if found is not None else None

    def misplaced(self, sentence: str) -> str | None:
        """A name from the agent's documents that ``sentence`` puts where they never do ("The
        bus that goes to your office is Delta Dental."), or None
        (:meth:`~phoneagent.llm.domain.document_claims.DocumentClaims.misplaced`)."""
        agent = self.executor.agent
        return _claims(agent.knowledge).misplaced(sentence, known=[agent.business_name])

    async def off_topic(self, sentence: str) -> bool:
        """Whether most of the words ``sentence`` shares with the agent's documents (at least
        :data:`OFF_TOPIC_WORDS` of them, and :data:`OFF_TOPIC_SHARE`) come from none of the
        :data:`ON_TOPIC_PASSAGES` paragraphs that best match the caller's latest words: the model
        read out the wrong paragraph, or blended two. The search runs in a worker thread, once
        per turn."""
        knowledge = self.executor.knowledge
        if knowledge is None or not self.said:
            return False
        claims = _claims(self.executor.agent.knowledge)
        words = claims.document_words(sentence)
        if len(words) < OFF_TOPIC_WORDS:
            return False
        question = self.said[-1][:300]
        if self._matched is None or self._matched[0] != question:
            try:
                found = await asyncio.to_thread(_on_topic_passages, knowledge, question)
            except PhoneAgentError:
                return False  # an unreadable question: nothing to judge the reply by
            matched = frozenset(w for text in found for w in claims.document_words(text))
            self._matched = (question, matched)
        outside = words - self._matched[1]
        return len(outside) >= OFF_TOPIC_WORDS and len(outside) >= OFF_TOPIC_SHARE * len(words)

    def knowledge_call(self) -> dict[str, Any] | None:
        """The knowledge tool asked the caller's latest words, where the agent has that tool."""
        if not self.said or not self.executor.agent.tool_enabled("lookup_knowledge"):
            return None
        return {"name": "lookup_knowledge", "arguments": {"question": self.said[-1][:300]}}

    def callable_schemas(self) -> list[dict[str, Any]]:
        """The tools a call may be generated for now (the grammar's choices; the prompt keeps
        all of them, so the prefix the engine holds does not change). ``end_call`` only when the
        caller takes their leave. The appointment tools only
        when the caller's last two turns are about an appointment (or ask to book, move or
        cancel one): a small model opens a booking
        tool for "how much is a cleaning?", and a call that would be declined costs a whole
        constrained generation; under this grammar it takes the knowledge tool instead."""
        tools = self.schemas()
        # The last two turns: "yes, please" that accepts an offered slot follows a booking turn,
        # "yes, please cancel" a request to cancel.
        recent = self.said[-2:]
        asks = any(_CANCEL.search(t) or _ACTION.search(t) for t in recent)
        if not (asks or (recent and wants_appointment(self.executor.agent, recent, self.clock()))):
            tools = [t for t in tools if t["function"]["name"] not in APPOINTMENT_TOOLS] or tools
        # Hanging up only where the caller's last words end the call (any other end_call is
        # declined): to "Yes, please cancel." the 0.5B model wrote end_call, was declined, and
        # then said "You're cancelled." with nothing cancelled.
        if not (self.said and takes_leave(self.said[-1])):
            tools = [t for t in tools if t["function"]["name"] != "end_call"] or tools
        unheard = self._unheard()
        return [_without(t, unheard) for t in tools]

    def _unheard(self) -> set[str]:
        """The optional arguments the caller has given nothing for, which the grammar leaves
        out: a phone number before seven digits were said, notes before the caller mentioned a
        note, a booking reference while the caller's latest words hold fewer than six digits,
        and the date of birth (code reads it from the caller's words; the model's copy is never
        used). Code would drop the model's versions anyway
        (:func:`~phoneagent.llm.prompting.normalise_arguments`, :meth:`_heard_secrets`); left
        out, they are never written: a small model filled a booking's call with an invented
        phone number and a sentence of notes, ~35 tokens of JSON at ~40 ms each."""
        said = " ".join(self.said)
        unheard = {BIRTH_DATE}
        if len(spoken_digits(said)) < 7:
            unheard.add("phone")
        if "note" not in said.lower():
            unheard.add("notes")
        if len(spoken_digits(self.said[-1] if self.said else "")) < 6:
            unheard.add("reference")
        return unheard

    def snapshot(self) -> dict[str, Any]:
        """What another replica needs to carry on: a booking waiting for an answer, the caller's
        recent words, what the tools last told the caller and on which turn a booking, move or
        cancellation last succeeded (JSON, kept with the dialog state)."""
        pending = None
        if self.pending is not None:
            pending = {
                "tool": self.pending[0],
                "arguments": self.pending[1],
                "missing": list(self.pending[2]),
            }
        return {
            "pending": pending,
            "said": list(self.said),
            "offered": list(self.offered),
            "verification": self.ctx.verification.snapshot(),
            "turns": self.turns,
            "acted_turn": self.acted_turn,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Take back a :meth:`snapshot`; anything malformed in it is dropped, never raised."""
        said, offered, pending = saved.get("said"), saved.get("offered"), saved.get("pending")
        self.ctx.verification.restore(saved.get("verification"))
        self.said = [t for t in said if isinstance(t, str)][-4:] if isinstance(said, list) else []
        self.offered = [t for t in offered if isinstance(t, str)][-2:] if isinstance(offered, list) else []
        turns, acted = saved.get("turns"), saved.get("acted_turn")
        if isinstance(turns, int) and isinstance(acted, int) and -1 <= acted <= turns:
            self.turns, self.acted_turn = turns, acted
        else:
            self.turns, self.acted_turn = 0, -1
        self.pending = None
        if (
            isinstance(pending, dict)
            and isinstance(pending.get("tool"), str)
            and isinstance(pending.get("arguments"), dict)
            and isinstance(pending.get("missing"), list)
        ):
            missing = tuple(m for m in pending["missing"] if isinstance(m, str))
            self.pending = (pending["tool"], dict(pending["arguments"]), missing)

    def caller_said(self, text: str) -> None:
        self.said = [*self.said[-3:], text]
        self.turns += 1

    def action_due(self) -> bool:
        """Whether the caller's latest words ask for a booking, a move or a cancellation that a tool
        must carry out: an action word in them ("book it", "move it", "cancel"), with a day in
        the last two turns for a booking or a move, no booking question pending, and no
        such action already done on the turn before (a caller who says "yes, book it" after the
        booking is confirming it). See :meth:`~phoneagent.llm.replies.Replies._stream`."""
        if not self.said or self.pending is not None or self.acted_turn >= self.turns - 1:
            return False
        latest = self.said[-1]
        if _CANCEL.search(latest):
            return True
        if not _ACTION.search(latest):
            return False
        agent, now = self.executor.agent, self.clock()
        for text in (latest, " ".join(self.said[-2:])):
            r = resolve(text, now, agent.tz, agent.hours_on)
            if r.ok and r.first_day is not None:  # a day: "can I book one?" alone reads as 1 pm
                return True
        return False

    def resume(self, text: str) -> dict[str, Any] | None:
        """The tool call to run in code for what the caller said, without the model: a booking
        asked a question and this is the answer, or the caller asks for the opening hours."""
        pending, self.pending = self.pending, None
        if pending is not None and answers(pending[2], self.executor.agent, text, self.clock()):
            arguments = dict(pending[1])
            if "name" in pending[2] and (given := caller_name([text], asked=True)) is not None:
                arguments["name"] = given  # "henry ford" alone is a name only as an answer
            return {"name": pending[0], "arguments": arguments}
        if pending is not None and (answer := self._secret_answer(pending[2], text)):
            return {"name": pending[0], "arguments": {**pending[1], **answer}}
        if self.executor.agent.tool_enabled("lookup_knowledge") and asks_for_hours(text):
            return {"name": "lookup_knowledge", "arguments": {"question": text}}
        return None

    async def _record(self, msg: Any) -> None:
        if self.record is None:
            return
        try:
            await self.record(msg)
        except PhoneAgentError as exc:  # a lost record must not break the call
            log.warning(
                "tool record not published", extra={"call_id": self.ctx.call_id, "error": exc.kind.name}
            )

    async def _execute(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Run one tool, with its call and result on the call's record (secrets left out)."""
        call_id = f"t{time.time_ns():x}"
        await self._record(
            tools_pb2.ToolCall(
                meta=new_meta(self.ctx.call_id, "llm"),  # the session names its replica
                tool_call_id=call_id,
                name=name,
                arguments_json=json.dumps(_unsecret(arguments), default=str),
            )
        )
        started = time.monotonic()
        result = await self.executor.execute(name, arguments, self.ctx)
        await self._record(
            tools_pb2.ToolResult(
                meta=new_meta(self.ctx.call_id, "llm"),  # the session names its replica
                tool_call_id=call_id,
                name=name,
                ok=result.ok,
                result_json=json.dumps(_unsecret({"status": result.status, **result.data}), default=str),
                duration_ms=int((time.monotonic() - started) * 1000),
            )
        )
        return result

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        agent = self.executor.agent
        fixed = normalise_arguments(agent, name, arguments, self.said, self.clock(), self.offered)
        _count_replaced(name, arguments, fixed)
        name = fixed.tool
        self.pending = None
        if fixed.declined:
            return ToolOutcome(ok=False, result={"status": "declined"}, declined=True)
        if fixed.ask:
            self.pending = (name, fixed.arguments, fixed.missing)
            return ToolOutcome(
                ok=False, result={"status": "needs_input"}, spoken=fixed.ask, final=True, tool=name
            )
        self._heard_secrets(name, fixed.arguments)
        result = await self._execute(name, fixed.arguments)
        latest = self.said[-1].strip()[:300] if self.said else ""
        if (
            name == "lookup_knowledge"
            and result.ok
            and not result.data.get("passages")
            and len(latest) >= 2
            and plain_words(latest) != plain_words(str(fixed.arguments.get("question", "")))
        ):
            # The model's question found nothing where the caller's own words may: it wrote "Is
            # life okay with you?" for "I have met life, is that okay with you?" (MetLife misheard).
            KNOWLEDGE_RETRIES.inc()
            result = await self._execute(name, {"question": latest})
        self.offered = [*self.offered[-1:], result.say]
        if name in ACTIONS and result.ok:
            self.acted_turn = self.turns
        if name == "book_appointment" and result.status == "needs_input" and "asked_for" in result.data:
            self.pending = (name, fixed.arguments, ("when",))
        elif result.status == "needs_input" and result.data.get("needs") in SECRETS:
            asked = {k: v for k, v in fixed.arguments.items() if k not in SECRETS}
            self.pending = (name, asked, (str(result.data["needs"]),))
        if name == "lookup_knowledge" and result.ok and not _configured_hours(result.data):
            # Documents answer in paragraphs: the model phrases the answer to what was asked in a
            # sentence or two, from the best passages: a runner-up only when it scored as close to
            # the best as the prompt's own passages need (PASSAGE_TIE), a clear winner alone;
            # for a question in two parts, the best passage of each.
            parts = bool(result.data.get("parts"))
            passages = _close_passages(result.data.get("passages", []), parts)[:2]
            if passages:
                # For two parts, each passage is said after the answer when it used none of it.
                each = {"parts": True} if parts and len(passages) > 1 else {}
                return ToolOutcome(
                    ok=True,
                    result={"status": result.status, "passages": passages, **each},
                    spoken=passages[0],
                    tool=name,
                    for_model="From the practice's documents: " + " ".join(passages),
                )
        # What the tools say (bookings, the configured hours, transfers, failures) is exact and
        # complete: it is spoken as it is, so a small model cannot misstate a date or a price.
        final = result.status == "error" or name in SPOKEN_AS_IS or name == "lookup_knowledge"
        return ToolOutcome(
            ok=result.ok,
            result={"status": result.status, **result.data},
            spoken=result.say,
            final=final,
            tool=name,
        )

    def _secret_answer(self, missing: tuple[str, ...], text: str) -> dict[str, str] | None:
        """The reference or date of birth a tool asked for, when ``text`` gives it."""
        reference = read_reference(text) if "reference" in missing else None
        if reference is not None:
            return {"reference": reference}
        if BIRTH_DATE in missing or ("reference" in missing and self.executor.agent.collect_date_of_birth):
            born = read_birth_date(text, self.clock().astimezone(self.executor.agent.tz).date())
            if born is not None:
                return {BIRTH_DATE: born.isoformat()}
        return None

    def _heard_secrets(self, name: str, arguments: dict[str, Any]) -> None:
        """The booking reference and date of birth are the ones the caller said. To prove a
        booking: from the caller's latest words only (a wrong answer said before is not sent
        again), the model's copy of a reference only when its digits are in them. At booking, a
        date of birth from the caller's recent turns. The model's own date of birth never counts
        (one it made up would use up a try, or be stored)."""
        given = arguments.pop("reference", None)
        arguments.pop(BIRTH_DATE, None)
        agent = self.executor.agent
        today = self.clock().astimezone(agent.tz).date()
        latest = self.said[-1] if self.said else ""
        if name in NEEDS_REFERENCE:
            heard = read_reference(latest)
            copied = read_reference(given) if isinstance(given, str) else None
            if heard is None and copied is not None and copied in spoken_digits(latest):
                heard = copied
            born = read_birth_date(latest, today) if agent.collect_date_of_birth else None
            if heard is not None:
                arguments["reference"] = heard
            elif born is not None:
                arguments[BIRTH_DATE] = born.isoformat()
        elif name == "book_appointment" and agent.collect_date_of_birth:
            born = read_birth_date(" ".join(self.said), today)
            if born is not None:
                arguments[BIRTH_DATE] = born.isoformat()


def _unsecret(body: dict[str, Any]) -> dict[str, Any]:
    """A tool call or result for the call record, without the booking reference or date of birth."""
    return {k: (f"[{k}]" if k in SECRETS else v) for k, v in body.items()}


KNOWLEDGE_RETRIES = Counter(
    "pa_llm_knowledge_caller_words_searches_total",
    "Knowledge lookups whose question, as the model wrote it, matched no passage and were "
    "searched again with the caller's own words.",
)
ARGUMENTS_REPLACED = Counter(
    "pa_llm_tool_arguments_replaced_total",
    "Scheduling tool arguments the model wrote that did not match the caller's words and were "
    "replaced by them before the tool ran (the day and time, a move's new one, the name, the "
    "appointment type), or the "
    "tool itself (an availability check with the caller's name and an exact time is a booking).",
    ["tool", "argument"],
)
_REPLACEABLE = {
    "book_appointment": ("appointment_type", "when", "name"),
    "check_availability": ("appointment_type", "when", "name"),
    "move_appointment": ("new_when",),
}


@functools.lru_cache(maxsize=8)
def _claims(paths: tuple[Path, ...]) -> DocumentClaims:
    return DocumentClaims(read_documents(paths))


def _count_replaced(tool: str, model: dict[str, Any], fixed: Normalised) -> None:
    if fixed.declined or tool not in _REPLACEABLE:
        return
    if fixed.tool != tool:
        ARGUMENTS_REPLACED.labels(tool=tool, argument="tool").inc()
    for key in _REPLACEABLE.get(fixed.tool, ()):
        if key in fixed.arguments and fixed.arguments[key] != model.get(key):
            ARGUMENTS_REPLACED.labels(tool=fixed.tool, argument=key).inc()


def _without(tool: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """``tool`` (a copy when anything changes) without the optional arguments in ``names``."""
    params = tool["function"].get("parameters") or {}
    props = params.get("properties") or {}
    required = set(params.get("required") or ())
    gone = {k for k in props if k in names and k not in required}
    if not gone:
        return tool
    narrowed = {**params, "properties": {k: v for k, v in props.items() if k not in gone}}
    return {**tool, "function": {**tool["function"], "parameters": narrowed}}


def _on_topic_passages(knowledge: KnowledgeBase, question: str) -> list[str]:
    """The paragraphs a reply to ``question`` may use: for each part of the question, the best
    match and a runner-up only when it scored within PASSAGE_TIE of it ("Can I pay for a big
    treatment in monthly payments?" matches the payment paragraph 0.71 and the insurance one
    0.36: a reply listing insurance plans is not an answer)."""
    texts: list[str] = []
    for part in question_parts(question) or [question]:
        found = knowledge.search(part, ON_TOPIC_PASSAGES, 0.0)
        texts += [p.text for p in close_to_best(found, lambda p: p.score) if p.text not in texts]
    return texts


def _close_passages(found: Any, each: bool = False) -> list[str]:
    """The texts of ``found`` (the knowledge tool's passages, best first) that scored within
    PASSAGE_TIE of the best; all of them when a score is missing, or when ``each`` is the best
    of one part of the question."""
    found = (
        [p for p in found if isinstance(p, dict) and isinstance(p.get("text"), str)]
        if isinstance(found, list)
        else []
    )
    if each or not all(isinstance(p.get("score"), int | float) for p in found):
        return [p["text"] for p in found]
    return [p["text"] for p in close_to_best(found, lambda p: float(p["score"]))]


def _configured_hours(data: dict[str, Any]) -> bool:
    """Whether a knowledge answer is the configured opening hours (exact: spoken as it is; not
    when they answer one part of a question in two)."""
    passages = data.get("passages")
    if not isinstance(passages, list) or not passages or not isinstance(passages[0], dict):
        return False
    if len(passages) > 1 and data.get("parts"):
        return False
    return passages[0].get("source") == HOURS_SOURCE
