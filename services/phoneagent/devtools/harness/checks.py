"""Checking a scenario's expectations against what the call produced."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from phoneagent.devtools.harness.buswatch import CallTrace
from phoneagent.devtools.harness.scenario import Expectation
from phoneagent.v1 import call_pb2, speech_pb2

if TYPE_CHECKING:
    from phoneagent.agents.agent import Agent
    from phoneagent.devtools.harness.caller import CallResult

DISCLOSURE_WORDS = 15  # the disclosure must come within the agent's first words
MISHEARD = "misheard by the harness"  # a check decided on the agent's sent words (see misheard)


@dataclass(frozen=True)
class CheckResult:
    expectation: Expectation
    passed: bool
    detail: str


def _norm(text: str) -> str:
    """Lower case, with "A.I." written as "ai"."""
    return re.sub(r"\ba\.\s?i\b\.?", "ai", text.lower())


def mentions(text: str, needle: str) -> bool:
    """``needle`` is one phrase or alternatives split by ``|`` ("9|nine": the agent's words are
    transcribed, so a number may come back as digits or as a word)."""
    said = _norm(text)
    return any(alt in said for alt in _alternatives(needle))


def _alternatives(needle: str) -> list[str]:
    return [alt.strip().lower() for alt in needle.split("|") if alt.strip()]


HEARD_SHARE = 0.6  # of a sent sentence's other words, the share the harness must have heard


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", _norm(text))


def misheard(heard: str, replies: Sequence[speech_pb2.AgentText], needle: str) -> str:
    """The reply the agent sent to speech with ``needle`` in it, when the harness's own
    recogniser did not write ``needle`` but heard most of that reply's other words (so the
    reply was played: one thrown away unheard does not count); "" when there is none.
    The agent said "Dr. Priya Shah sees kids and teenagers." and the harness heard "Dr.
    Priasha, sees kids and teenagers."."""
    heard_words = set(_words(heard))
    alternatives = _alternatives(needle)
    # The agent's words come in pieces (a first phrase, then sentences): each generation's
    # pieces are judged together, in order.
    generations: dict[int, list[speech_pb2.AgentText]] = {}
    for reply in replies:
        if not reply.from_policy and reply.text.strip():
            generations.setdefault(reply.meta.generation_id, []).append(reply)
    for pieces in generations.values():
        text = " ".join(r.text.strip() for r in sorted(pieces, key=lambda r: r.sentence_seq))
        if not mentions(text, needle):
            continue
        named = {w for alt in alternatives if alt in _norm(text) for w in _words(alt)}
        rest = [w for w in _words(text) if w not in named]
        if rest and sum(w in heard_words for w in rest) >= HEARD_SHARE * len(rest):
            return text
    return ""


def first_words_contain(text: str, needle: str, words: int = DISCLOSURE_WORDS) -> bool:
    head = " ".join(_norm(text).split()[:words])
    return re.search(rf"\b{re.escape(needle.lower())}\b", head) is not None


def _appointments(call_id: str, caller: str) -> tuple[list[tuple[str, str]], str]:
    """(status, starts_at UTC text) of the appointments this call made (by call id, else by
    the caller's number)."""
    url = os.environ.get("PA_DATABASE_URL", "")
    if not url:
        return [], "PA_DATABASE_URL is not set"
    from phoneagent.runtime.db import Database

    db = Database(url)
    try:
        with db.transaction() as tx:
            if call_id:
                rows = tx.query("SELECT status, starts_at FROM appointments WHERE call_id = ?", (call_id,))
            else:
                rows = tx.query(
                    "SELECT status, starts_at FROM appointments WHERE phone LIKE ?",
                    (f"%{caller.lstrip('+')[-10:]}",),
                )
    finally:
        db.close()
    return [(str(r[0]), str(r[1])) for r in rows], "appointments found"


def free_the_book() -> int:
    """Cancel every booked appointment in the stack's book and free its slots, so that each
    scenario of an evaluation finds the book as the first one did (two scenarios asking for the
    same slot would otherwise depend on their order). Returns how many were cancelled."""
    url = os.environ.get("PA_DATABASE_URL", "")
    if not url:
        return 0
    from phoneagent.runtime.db import Database

    db = Database(url)
    try:
        with db.transaction() as tx:
            tx.execute("DELETE FROM appointment_cells")
            return tx.execute("UPDATE appointments SET status = 'cancelled' WHERE status = 'booked'")
    finally:
        db.close()


def _local_slot(starts_at: str) -> str:
    """``"tuesday 10:00"`` for a stored UTC start, in the time zone of the agent the stack runs."""
    moment = datetime.strptime(starts_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    local = moment.astimezone(_agent().tz)
    return f"{local.strftime('%A').lower()} {local:%H:%M}"


def _opted_out(caller: str) -> bool:
    from phoneagent.policy.stores import PolicyStores

    path = os.environ.get("PA_POLICY_DB", "var/policy.sqlite3")
    with PolicyStores(path) as stores:
        return stores.dnc.lookup(caller) is not None


def _agent() -> Agent:
    """The agent the stack runs (PA_AGENT_FILE, else the bundled one)."""
    from phoneagent.agents import example_agent_path
    from phoneagent.agents.agent import load_agent

    return load_agent(os.environ.get("PA_AGENT_FILE") or example_agent_path())


def _staffed_now() -> bool:
    """Whether the agent the stack runs takes transfers now."""
    return _agent().staffed_at(datetime.now(UTC))


def check(exp: Expectation, result: CallResult, trace: CallTrace | None) -> CheckResult:
    text = result.reply_text  # what the agent said in reply: not its greeting
    first = next((t.text for t in result.agent_turns if t.text), "")
    if exp.kind in ("mentions", "not_mentions"):
        heard = mentions(text, str(exp.value))
        sent = "" if heard else misheard(text, trace.replies if trace else [], str(exp.value))
        wanted = exp.kind == "mentions"
        if heard:
            detail = "found in the agent's replies" if wanted else "said by the agent"
        elif sent:
            detail = f"{MISHEARD}: the agent said {sent!r}"
        else:
            detail = "not in the agent's replies" if wanted else "absent from the agent's replies"
        return CheckResult(exp, (heard or bool(sent)) == wanted, detail)
    if exp.kind == "disclosure":
        ok = first_words_contain(first, str(exp.value))
        return CheckResult(exp, ok, f"agent's first words: {' '.join(first.split()[:DISCLOSURE_WORDS])!r}")
    if exp.kind == "ended_by_agent":
        by_agent = result.ended_by == "agent" or (
            trace is not None
            and trace.ended is not None
            and trace.ended.reason == call_pb2.END_REASON_AGENT_HANGUP
        )
        return CheckResult(exp, by_agent == exp.value, f"ended by {result.ended_by or 'unknown'}")
    if exp.kind == "transfer_requested":
        seen = bool(result.refer_targets) or bool(trace and trace.transfers)
        how = "REFER received" if result.refer_targets else ("transfer on the bus" if seen else "none seen")
        return CheckResult(exp, seen == exp.value, how)
    if exp.kind == "escalated":
        transferred = bool(result.refer_targets) or bool(trace and trace.transfers)
        if _staffed_now():
            return CheckResult(
                exp, transferred == exp.value, "transfer requested" if transferred else "no transfer"
            )
        offered = not transferred and mentions(text, "message")
        detail = "closed: " + (
            "message offered" if offered else "transfer requested" if transferred else "no offer"
        )
        return CheckResult(exp, offered == exp.value, detail)
    if exp.kind in ("appointment_booked", "appointment_at", "appointment_cancelled"):
        return _check_appointments(exp, trace.call_id if trace else "", result.caller_user)
    if exp.kind == "opted_out":
        out = _opted_out(result.caller_user)
        return CheckResult(exp, out == exp.value, "on the do-not-call list" if out else "not on the list")
    return CheckResult(exp, False, "unknown expectation")


def _check_appointments(exp: Expectation, call_id: str, caller: str) -> CheckResult:
    rows, detail = _appointments(call_id, caller)
    booked = [_local_slot(start) for status, start in rows if status == "booked"]
    if exp.kind == "appointment_booked":
        return CheckResult(exp, bool(rows) == exp.value, f"{len(rows)} {detail}")
    if exp.kind == "appointment_cancelled":
        cancelled = sum(1 for status, _ in rows if status == "cancelled")
        ok = (cancelled > 0 and not booked) == exp.value
        return CheckResult(exp, ok, f"{cancelled} cancelled, {len(booked)} still booked")
    ok = booked == [str(exp.value)]
    return CheckResult(exp, ok, f"booked: {', '.join(booked) or 'none'} ({detail})")


def check_all(result: CallResult, trace: CallTrace | None) -> list[CheckResult]:
    return [check(e, result, trace) for e in result.scenario.expect]
