"""The check before a tool shows or changes a booking: the caller ID must be the number the
booking was made with, and the caller must have given its booking reference in this call (or
their date of birth, where the agent file collects it at booking).

A refusal never tells whether a booking exists: no booking for the caller ID and a wrong
reference get the same words after the same work. A number said on the call is never used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from phoneagent.agents.agent import Agent
from phoneagent.llm.domain.scheduling import Appointment, SchedulingStore, normalise_phone
from phoneagent.llm.domain.tool_result import CallContext, ToolResult
from phoneagent.llm.domain.tool_schemas import BIRTH_DATE
from phoneagent.llm.domain.verification import CallerVerification, read_birth_date, read_reference
from phoneagent.runtime.errors import ErrorKind, InvalidArgument

log = logging.getLogger(__name__)

ASK_REFERENCE = (
    "To keep your booking safe, I need the 6-digit booking reference you were given when you booked. "
    "What is it?"
)
ASK_REFERENCE_OR_BIRTH = (
    "To keep your booking safe, I need the 6-digit booking reference you were given when you booked, "
    "or your date of birth. Could you tell me one of them?"
)
ASK_OTHER_REFERENCE = (
    "I can't find that appointment among the bookings you've confirmed. If it's another booking, "
    "what is its booking reference?"
)
ASK_BIRTH_DATE = "What is your date of birth? We use it to confirm it's you when you call about the booking."
# The same words for no booking and for a wrong reference or date of birth.
NO_MATCH = "Sorry, I can't find a booking with those details for the number you're calling from."
MALFORMED = "Sorry, a booking reference has 6 digits."
MALFORMED_BIRTH = "Sorry, I didn't catch the whole date of birth, with the year."
SAY_AGAIN = " Could you say it again?"
NO_CALLER_ID = "Sorry, I can only look up a booking when you call from the phone number it was made with."
LOCKED = "Sorry, I can't confirm the booking on this call."
OFFER_TRANSFER = " I can put you through to the front desk."
OFFER_MESSAGE = " I can take a message so the staff can call you back."
# What the model reads in the tool result when the caller has to give the reference.
ASK_NEXT = (
    "Ask the caller for their 6-digit booking reference, then call this tool again with it as reference."
)
ASK_BIRTH_NEXT = "Ask the caller for their date of birth, then call book_appointment again with it."
REFUSED_NEXT = "Do not try again: offer a transfer to a person or to take a message."


class BookingAccess:
    """Which upcoming bookings this call may see or change (see the module docstring)."""

    def __init__(self, agent: Agent, clock: Callable[[], datetime]) -> None:
        self.agent, self.clock = agent, clock

    def proved(
        self, store: SchedulingStore, tool: str, args: dict[str, Any], ctx: CallContext
    ) -> list[Appointment] | ToolResult:
        """The caller's upcoming bookings proved in this call (checking ``args["reference"]``
        when given), or the result that asks for the reference or refuses."""
        state = ctx.verification
        caller = _caller_id(ctx)
        if caller is None:
            state.fail("no_caller_id")
            return self._refuse(tool, NO_CALLER_ID)
        reference, born = args.get("reference"), args.get(BIRTH_DATE)
        if not self.agent.collect_date_of_birth:
            born = None
        if isinstance(reference, str) or isinstance(born, str):
            if state.locked:
                state.fail("locked")
                return self._refuse(tool, LOCKED)
            if isinstance(reference, str):
                code = read_reference(reference)
                matched = store.match_reference(caller, code) if code else None
                unreadable = MALFORMED
            else:
                day = read_birth_date(str(born), self.clock().astimezone(self.agent.tz).date())
                matched = store.match_birth_date(caller, day) if day else None
                unreadable = MALFORMED_BIRTH
            if matched is None:
                state.fail("malformed")
                return self._again(tool, unreadable, state)
            if not matched:
                state.fail("no_match")
                log.info("booking reference refused", extra={"call_id": ctx.call_id, "tool": tool})
                return self._again(tool, NO_MATCH, state)
            state.prove([a.id for a in matched])
            log.info("caller verified", extra={"call_id": ctx.call_id, "bookings": len(matched)})
        mine = [a for a in store.find_by_phone(caller) if a.id in state.verified]
        if mine:
            return mine
        if state.locked:
            state.fail("locked")
            return self._refuse(tool, LOCKED)
        return ask_reference(tool, self.ask_words)

    @property
    def ask_words(self) -> str:
        return ASK_REFERENCE_OR_BIRTH if self.agent.collect_date_of_birth else ASK_REFERENCE

    def _again(self, tool: str, words: str, state: CallerVerification) -> ToolResult:
        if state.locked:
            return self._refuse(tool, words)
        return ask_reference(tool, words + SAY_AGAIN, attempts_left=state.attempts_left)

    def _refuse(self, tool: str, words: str) -> ToolResult:
        staffed = self.agent.tool_enabled("transfer_to_human") and self.agent.staffed_at(self.clock())
        return ToolResult(
            tool,
            "error",
            words + (OFFER_TRANSFER if staffed else OFFER_MESSAGE),
            {"next_step": REFUSED_NEXT},
            ErrorKind.POLICY_DENIED,
        )


def ask_reference(tool: str, words: str, **extra: Any) -> ToolResult:
    """Ask the caller for a booking reference (the dialog resumes the tool with the answer)."""
    return ToolResult(tool, "needs_input", words, {"needs": "reference", "next_step": ASK_NEXT, **extra})


def _caller_id(ctx: CallContext) -> str | None:
    if not ctx.caller_number:
        return None
    try:
        return normalise_phone(ctx.caller_number)
    except InvalidArgument:  # "anonymous", a short extension: not a number a booking was made with
        return None
