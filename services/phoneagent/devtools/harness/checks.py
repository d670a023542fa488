"""Checking a scenario's expectations against what the call produced."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from phoneagent.devtools.harness.buswatch import CallTrace
from phoneagent.devtools.harness.scenario import Expectation
from phoneagent.v1 import call_pb2

if TYPE_CHECKING:
    from phoneagent.devtools.harness.caller import CallResult

DISCLOSURE_WORDS = 15  # the disclosure must come within the agent's first words


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
    return any(alt.strip().lower() in said for alt in needle.split("|") if alt.strip())


def first_words_contain(text: str, needle: str, words: int = DISCLOSURE_WORDS) -> bool:
    head = " ".join(_norm(text).split()[:words])
    return re.search(rf"\b{re.escape(needle.lower())}\b", head) is not None


def _appointment_count(call_id: str, caller: str) -> tuple[int, str]:
    url = os.environ.get("PA_DATABASE_URL", "")
    if not url:
        return 0, "PA_DATABASE_URL is not set"
    from phoneagent.runtime.db import Database

    db = Database(url)
    try:
        with db.transaction() as tx:
            if call_id:
                rows = tx.query("SELECT count(*) FROM appointments WHERE call_id = ?", (call_id,))
            else:
                rows = tx.query(
                    "SELECT count(*) FROM appointments WHERE phone LIKE ?", (f"%{caller.lstrip('+')[-10:]}",)
                )
    finally:
        db.close()
    return int(rows[0][0]), "appointments found"


def _opted_out(caller: str) -> bool:
    from phoneagent.policy.stores import PolicyStores

    path = os.environ.get("PA_POLICY_DB", "var/policy.sqlite3")
    with PolicyStores(path) as stores:
        return stores.dnc.lookup(caller) is not None


def _staffed_now() -> bool:
    """Whether the agent the stack runs (PA_AGENT_FILE, else the bundled one) takes transfers now."""
    from phoneagent.agents import example_agent_path
    from phoneagent.agents.agent import load_agent

    path = os.environ.get("PA_AGENT_FILE") or example_agent_path()
    return load_agent(path).staffed_at(datetime.now(UTC))


def check(exp: Expectation, result: CallResult, trace: CallTrace | None) -> CheckResult:
    text = result.agent_text
    first = next((t.text for t in result.agent_turns if t.text), "")
    if exp.kind == "mentions":
        ok = mentions(text, str(exp.value))
        return CheckResult(exp, ok, "found in the agent transcript" if ok else "not in the agent transcript")
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
    if exp.kind == "appointment_booked":
        count, detail = _appointment_count(trace.call_id if trace else "", result.caller_user)
        return CheckResult(exp, (count > 0) == exp.value, f"{count} {detail}")
    if exp.kind == "opted_out":
        out = _opted_out(result.caller_user)
        return CheckResult(exp, out == exp.value, "on the do-not-call list" if out else "not on the list")
    return CheckResult(exp, False, "unknown expectation")


def check_all(result: CallResult, trace: CallTrace | None) -> list[CheckResult]:
    return [check(e, result, trace) for e in result.scenario.expect]
