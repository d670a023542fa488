"""The body of each tool. Called in a worker thread by :class:`tools.ToolExecutor`."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from phoneagent.agents.agent import Agent
from phoneagent.llm.domain.booking_access import (
    ASK_BIRTH_DATE,
    ASK_BIRTH_NEXT,
    ASK_OTHER_REFERENCE,
    BookingAccess,
    ask_reference,
)
from phoneagent.llm.domain.calendar_facts import HOURS_SOURCE, hours_answer
from phoneagent.llm.domain.dates import Resolution, Status, resolve, speak_day, speak_time
from phoneagent.llm.domain.knowledge import KnowledgeBase
from phoneagent.llm.domain.scheduling import (
    Appointment,
    AppointmentNotFound,
    SchedulingStore,
    Slot,
    SlotUnavailable,
)
from phoneagent.llm.domain.tool_result import CallContext, ToolResult
from phoneagent.llm.domain.tool_schemas import BIRTH_DATE
from phoneagent.llm.domain.verification import read_birth_date
from phoneagent.runtime.errors import ErrorKind, Unavailable

SEARCH_DAYS = 14
# A second question joined to the first: ", and is parking free?", " and how much notice ...".
_SECOND_QUESTION = re.compile(
    r",?\s+(?:and|also)\s+(?=(?:is|are|do|does|did|can|could|will|would|should|what|what's|how|where"
    r"|when|who|which|why)\b)",
    re.I,
)
OFFER = 3


def spoken(moment: datetime) -> str:
    return f"{speak_day(moment.date())} at {speak_time(moment.time())}"


def _slot(s: Slot) -> dict[str, str]:
    return {"start": s.start.isoformat(), "spoken": spoken(s.start)}


def _appt(a: Appointment, type_name: str) -> dict[str, str]:
    return {
        "appointment_id": a.id,
        "type": type_name,
        "start": a.start.isoformat(),
        "spoken": spoken(a.start),
    }


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def question_parts(question: str) -> list[str]:
    """``question`` cut where a second question is joined to it ("What time do you open on
    Monday, and is parking free?" is two); one part when there is none."""
    return [p.strip() for p in _SECOND_QUESTION.split(question) if p.strip()]


class Handlers:
    def __init__(
        self,
        agent: Agent,
        store: SchedulingStore | None,
        knowledge: KnowledgeBase | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.agent, self.store, self.knowledge, self.clock = agent, store, knowledge, clock
        self.access = BookingAccess(agent, clock)

    def run(self, name: str, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        return getattr(self, name)(args, ctx)  # the name was checked against TOOL_SCHEMAS

    def _result(
        self, tool: str, status: str, say: str, data: dict[str, Any] | None = None, **kw: Any
    ) -> ToolResult:
        return ToolResult(tool, status, say, data or {}, **kw)

    def _book(self) -> SchedulingStore:
        if self.store is None:
            raise Unavailable("the appointment book is not connected")
        return self.store

    def _resolve(self, text: str | None) -> Resolution:
        now = self.clock()
        if not text:
            today = now.astimezone(self.agent.tz).date()
            return Resolution(
                Status.RESOLVED, "", today, today + timedelta(days=SEARCH_DAYS - 1), earliest=True
            )
        return resolve(text, now, self.agent.tz, self.agent.hours_on)

    def _unclear(self, tool: str, r: Resolution) -> ToolResult | None:
        if r.status in (Status.UNKNOWN, Status.INVALID):
            why = r.note or "I did not understand the day or time"
            return self._result(
                tool,
                "needs_input",
                f"Could you tell me the day and time again? {why}.",
                {"resolution": r.status.value},
            )
        return None

    def _phone(self, args: dict[str, Any], ctx: CallContext) -> str | None:
        return args.get("phone") or ctx.caller_number

    # --- availability and booking ------------------------------------------------------------
    def _search(self, type_id: str, r: Resolution) -> list[Slot]:
        store = self._book()
        today = self.clock().astimezone(self.agent.tz).date()
        days = r.days() or [today + timedelta(days=i) for i in range(SEARCH_DAYS)]
        window = (r.window.start, r.window.end) if r.window else None
        if r.at is not None:
            window = (r.at, (datetime.combine(date.min, r.at) + timedelta(minutes=1)).time())
        return store.free_slots(type_id, days, window, limit=OFFER)

    def _nearby(self, type_id: str, r: Resolution) -> list[Slot]:
        """Alternatives when the asked-for time is taken: same days first, then the next two weeks."""
        store = self._book()
        slots = store.free_slots(type_id, r.days(), None, limit=OFFER) if r.days() else []
        if not slots:
            start = (r.last_day or self.clock().astimezone(self.agent.tz).date()) + timedelta(days=1)
            slots = store.free_slots(
                type_id, [start + timedelta(days=i) for i in range(SEARCH_DAYS)], None, limit=OFFER
            )
        return slots

    def check_availability(self, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        kind = self._book().appointment_type(args["appointment_type"])
        r = self._resolve(args.get("when"))
        if unclear := self._unclear("check_availability", r):
            return unclear
        slots = self._search(kind.id, r)
        data: dict[str, Any] = {
            "appointment_type": kind.name,
            "duration_minutes": kind.duration_minutes,
            "asked_for": r.describe(),
        }
        if slots:
            data["slots"] = [_slot(s) for s in slots]
            return self._result(
                "check_availability",
                "ok",
                f"For {kind.name.lower()} I can offer {_list([spoken(s.start) for s in slots])}.",
                data,
            )
        others = self._nearby(kind.id, r)
        data["slots"], data["requested_free"] = [_slot(s) for s in others], False
        if not others:
            return self._result(
                "check_availability",
                "ok",
                f"I'm sorry, there is nothing free {r.describe()} or in the two weeks after.",
                data,
            )
        days = r.days()
        # A day the business does not open is said as such ("Nothing is free Sunday" read as if
        # Sunday were booked up), and the nearest times name what they are for.
        closed = bool(days) and not any(self.agent.hours_on(d) for d in days)
        return self._result(
            "check_availability",
            "ok",
            f"{'We are closed' if closed else 'Nothing is free'} {r.describe()}. The nearest times "
            f"for {kind.name.lower()} are {_list([spoken(s.start) for s in others])}.",
            data,
        )

    def book_appointment(self, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        store = self._book()
        kind = store.appointment_type(args["appointment_type"])
        r = self._resolve(args["when"])
        if unclear := self._unclear("book_appointment", r):
            return unclear
        if not r.is_exact or r.status is Status.AMBIGUOUS:
            options = [a.describe() for a in r.alternatives]
            hint = f" Did you mean {_list([r.describe(), *options])}?" if options else ""
            return self._result(
                "book_appointment",
                "needs_input",
                f"Which exact day and time would you like?{hint}",
                {"asked_for": r.describe()},
            )
        phone = self._phone(args, ctx)
        if not phone:
            return self._result("book_appointment", "needs_input", "What number can we reach you on?")
        own = self._booked_in_call(store, kind.id, str(args["name"]), phone, ctx)
        if own is not None:
            # The caller corrects the time ("sorry, I meant ten") or confirms it again after the
            # booking was made: the call's own booking changes, a second one is never added.
            return self._rebook(own, r, kind.name)
        born = None
        if self.agent.collect_date_of_birth:
            today = self.clock().astimezone(self.agent.tz).date()
            born = read_birth_date(str(args.get(BIRTH_DATE, "")), today)
            if born is None:
                return self._result(
                    "book_appointment",
                    "needs_input",
                    ASK_BIRTH_DATE,
                    {"needs": BIRTH_DATE, "next_step": ASK_BIRTH_NEXT},
                )
        try:
            appt = store.book(
                kind.id,
                r.start(self.agent.tz),
                args["name"],
                phone,
                args.get("notes", ""),
                ctx.call_id,
                birth_date=born,
            )
        except SlotUnavailable as exc:
            return self._slot_taken("book_appointment", kind.id, r, f"Sorry, {exc.message}.")
        ctx.verification.prove([appt.id])  # made in this call: the caller may change it at once
        return self._result(
            "book_appointment",
            "ok",
            f"You're booked for {kind.name.lower()} on {spoken(appt.start)}. Your booking reference is "
            f"{appt.reference}; you'll need it to change or cancel the booking.",
            {**_appt(appt, kind.name), "reference": appt.reference},
        )

    def _slot_taken(self, tool: str, type_id: str, r: Resolution, said: str, **data: Any) -> ToolResult:
        """The slot asked for is gone: ``said``, then the free slots nearest to it."""
        others = self._nearby(type_id, r)
        offer = f" I can offer {_list([spoken(s.start) for s in others])}." if others else ""
        return self._result(
            tool,
            "error",
            f"{said}{offer}",
            {"slots": [_slot(s) for s in others], **data},
            error_kind=ErrorKind.INVALID_ARGUMENT,
        )

    def _booked_in_call(
        self, store: SchedulingStore, type_id: str, name: str, phone: str, ctx: CallContext
    ) -> Appointment | None:
        """The upcoming booking this call made of this type for this person, if any (the latest).
        Another person's booking in the same call (a family member) is a booking of its own."""
        mine = [
            a
            for a in store.find_by_phone(phone)
            if a.call_id == ctx.call_id and a.type_id == type_id and _same_person(a.caller_name, name)
        ]
        return mine[-1] if mine else None

    def _rebook(self, own: Appointment, r: Resolution, type_name: str) -> ToolResult:
        """Book the call's own booking ``own`` for ``r`` instead: moved, or left as it is."""
        start = r.start(self.agent.tz)
        if own.start == start:
            return self._result(
                "book_appointment",
                "ok",
                f"You're booked for {type_name.lower()} on {spoken(own.start)}.",
                {**_appt(own, type_name), "already_booked": True},
            )
        try:
            moved = self._book().move(own.id, start, own.phone)
        except SlotUnavailable as exc:
            said = f"Sorry, {exc.message}. Your booking on {spoken(own.start)} stands."
            return self._slot_taken("book_appointment", own.type_id, r, said, appointment_id=own.id)
        return self._result(
            "book_appointment",
            "ok",
            f"I've changed your booking: you're booked for {type_name.lower()} on {spoken(moved.start)} "
            f"instead of {spoken(own.start)}, with the same booking reference.",
            {**_appt(moved, type_name), "moved_from": own.start.isoformat()},
        )

    # --- existing appointments ---------------------------------------------------------------
    # Only bookings made from the caller ID, once the caller gave their reference in this call
    # (BookingAccess): a number said on the call is never looked up.
    def find_appointments(self, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        found = self.access.proved(self._book(), "find_appointments", args, ctx)
        if isinstance(found, ToolResult):
            return found
        data = {"appointments": [_appt(a, self._type_name(a)) for a in found]}
        listed = _list([f"{self._type_name(a).lower()} on {spoken(a.start)}" for a in found])
        return self._result("find_appointments", "ok", f"You have {listed}.", data)

    def _type_name(self, a: Appointment) -> str:
        kind = self.agent.find_type(a.type_id)
        return kind.name if kind else a.type_id

    def _pick(self, tool: str, args: dict[str, Any], ctx: CallContext) -> Appointment | ToolResult:
        found = self.access.proved(self._book(), tool, args, ctx)
        if isinstance(found, ToolResult):
            return found
        # An id that names none of them (a small model wrote the booking reference there) is
        # not the caller's choice: the day and time they gave picks among the same bookings.
        named = [a for a in found if a.id == args.get("appointment_id")]
        if named or (args.get("appointment_id") and not args.get("when")):
            found = named
        elif args.get("when"):
            r = self._resolve(args["when"])
            found = [
                a for a in found if a.start.date() in r.days() and (r.at is None or a.start.time() == r.at)
            ]
        if len(found) == 1:
            return found[0]
        if not found:
            return ask_reference(tool, ASK_OTHER_REFERENCE)
        listed = _list([spoken(a.start) for a in found])
        return self._result(
            tool,
            "needs_input",
            f"You have appointments on {listed}. Which one?",
            {"appointments": [_appt(a, self._type_name(a)) for a in found]},
        )

    def _cancelled_in_call(self, args: dict[str, Any], ctx: CallContext) -> Appointment | None:
        """The booking ``args`` names by its id, when this caller proved it in this call and it
        is cancelled already."""
        wanted = args.get("appointment_id")
        if not isinstance(wanted, str) or wanted not in ctx.verification.verified:
            return None
        try:
            found = self._book().get(wanted)
        except AppointmentNotFound:
            return None
        return found if found.status == "cancelled" else None

    def move_appointment(self, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        picked = self._pick("move_appointment", args, ctx)
        if not isinstance(picked, Appointment):
            return picked
        r = self._resolve(args["new_when"])
        if unclear := self._unclear("move_appointment", r):
            return unclear
        if not r.is_exact or r.status is Status.AMBIGUOUS:
            return self._result(
                "move_appointment", "needs_input", "Which exact day and time should I move it to?"
            )
        try:
            moved = self._book().move(picked.id, r.start(self.agent.tz), picked.phone)
        except SlotUnavailable as exc:
            return self._slot_taken("move_appointment", picked.type_id, r, f"Sorry, {exc.message}.")
        return self._result(
            "move_appointment",
            "ok",
            f"Done: your appointment is now on {spoken(moved.start)}.",
            _appt(moved, self._type_name(moved)),
        )

    def cancel_appointment(self, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        gone = self._cancelled_in_call(args, ctx)
        if gone is not None:
            # "Yes, cancel it." after the cancellation: the 0.5B model cancelled again, and the
            # caller was asked for a booking reference.
            return self._result(
                "cancel_appointment",
                "ok",
                f"Your appointment on {spoken(gone.start)} is already cancelled.",
                {**_appt(gone, self._type_name(gone)), "already_cancelled": True},
            )
        picked = self._pick("cancel_appointment", args, ctx)
        if not isinstance(picked, Appointment):
            return picked
        done = self._book().cancel(picked.id, picked.phone)
        return self._result(
            "cancel_appointment",
            "ok",
            f"Your appointment on {spoken(done.start)} is cancelled.",
            _appt(done, self._type_name(done)),
        )

    # --- conversation tools ------------------------------------------------------------------
    def lookup_knowledge(self, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        """The passages that best match the question; for a question with two parts ("What time
        do you open on Monday, and is parking free?") the best passage of each part, in the
        question's order (``parts`` in the result), where one search gives the hours alone. The
        configured hours' passage answers for the day its part names."""
        if self.knowledge is None:
            raise Unavailable("the practice information is not loaded")
        question = args["question"]
        parts = question_parts(question)
        if len(parts) < 2:
            found = [(question, p) for p in self.knowledge.search(question)]
        else:
            found = []
            for part in parts:
                best = self.knowledge.search(part, k=1)
                if best and all(best[0].text != p.text for _, p in found):
                    found.append((part, best[0]))
        if not found:
            return self._result("lookup_knowledge", "ok", "I don't have that information.", {"passages": []})
        texts = [
            # the configured hours: for the day asked about
            (hours_answer(self.agent, part, self.clock()) if p.source == HOURS_SOURCE else None) or p.text
            for part, p in found
        ]
        passages = [
            {"text": text, "source": p.source, "score": round(p.score, 3)}
            for text, (_, p) in zip(texts, found, strict=True)
        ]
        data: dict[str, Any] = {"passages": passages}
        if len(parts) > 1:
            data["parts"] = len(passages)
        return self._result("lookup_knowledge", "ok", texts[0], data)

    def transfer_to_human(self, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        transfer = self.agent.transfer
        if transfer is None or not self.agent.staffed_at(self.clock()):
            return self._result(
                "transfer_to_human",
                "ok",
                "Nobody is available to take the call right now. I can take a message.",
                {"transferred": False},
            )
        return self._result(
            "transfer_to_human",
            "ok",
            "I'll put you through now.",
            {"transferred": True, "target_kind": transfer.kind},
            action="transfer",
        )

    def take_message(self, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        phone = self._phone(args, ctx)
        if not phone:
            return self._result("take_message", "needs_input", "What number should we call you back on?")
        msg = self._book().take_message(
            args["name"], phone, args["message"], bool(args.get("urgent")), ctx.call_id
        )
        return self._result(
            "take_message",
            "ok",
            "I've passed your message on; someone will call you back.",
            {"message_id": msg.id},
        )

    def end_call(self, args: dict[str, Any], ctx: CallContext) -> ToolResult:
        return self._result("end_call", "ok", "Goodbye.", {}, action="end_call")


def _same_person(booked: str, name: str) -> bool:
    return " ".join(booked.casefold().split()) == " ".join(name.casefold().split())
