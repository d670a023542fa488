"""Rules applied while a call is live: opt-out, escalation to a human, recording consent.

:class:`LiveRules` is the per-call decision logic, free of the bus: it is fed the caller's
final transcripts, the agent's replies and playback reports, and returns :class:`Verdict`
objects (a directive for the dialog and/or a record for the audit stream). The policy
session (:mod:`phoneagent.policy.service`) publishes them.

* Opt-out ("stop calling me") adds the caller's number to the internal DNC list and hangs up
  after a confirmation; nothing else is acted on afterwards.
* Escalation (a request for a person, a trigger word, or repeated misunderstanding) transfers
  to the agent's human when one is configured and available and the business is open (its
  opening hours and closures), else the agent takes a message.
  Misunderstanding is read from the agent's own replies: a reply that apologises for not
  understanding counts the caller turn before it as misunderstood.
* A caller who asks whether they are talking to a person or a machine is told, in policy's
  words, that the agent is an AI (audited under ``disclosure``): the whole answer when that was
  all they asked, before the model answers the rest otherwise. A request for a person in the
  same turn is an escalation, which says enough.
* Recording: planned per call from the parties' numbers. The notice or the consent question
  is said once the first agent utterance (the greeting, with the AI disclosure) has played;
  the caller's answer, or a later "stop recording", is audited under subject ``recording``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from phoneagent.agents.words import TAKE_MESSAGE_TEXT, TRANSFER_TEXT
from phoneagent.policy.call_rules import (
    IDENTITY_ANSWER,
    EscalationAction,
    EscalationConfig,
    EscalationDetector,
    RecordingConfig,
    RecordingMode,
    RecordingSession,
    RecordingState,
    detect_identity_question,
    handle_opt_out,
    only_identity_question,
    plan_recording,
)
from phoneagent.policy.stores import DncStore
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.numbers import normalize_e164
from phoneagent.runtime.redact import redact_transcript
from phoneagent.v1 import call_pb2, control_pb2, policy_pb2

log = logging.getLogger(__name__)

_MISUNDERSTOOD = re.compile(
    r"\b(?:sorry|apologi[sz]e)\b.*\b(?:understand|catch|follow|say that again|repeat|did not get|didn't get)",
    re.IGNORECASE,
)
MAX_AUDIT_TEXT = 200


@dataclass(frozen=True)
class AuditEntry:
    decision: int  # policy_pb2.Decision
    subject: str
    rule: str
    reason: str
    number: str = ""
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    directive: control_pb2.PolicyDirective | None = None
    audit: AuditEntry | None = None


def party_number(uri: str) -> str | None:
    """The E.164 number in a SIP/tel URI or a bare number, or None when it holds none."""
    text = uri.strip()
    for prefix in ("sips:", "sip:", "tel:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
            break
    text = text.split("@", 1)[0].split(";", 1)[0]
    try:
        return normalize_e164(text)
    except InvalidArgument:
        return None


def caller_number(call: call_pb2.CallStarted) -> str | None:
    """The remote party: who calls us (inbound) or whom we call (outbound)."""
    inbound = call.direction != call_pb2.DIRECTION_OUTBOUND
    return party_number(call.from_uri if inbound else call.to_uri)


def _said(text: str) -> dict[str, str]:
    return {"caller_said": redact_transcript(text)[:MAX_AUDIT_TEXT]}


class LiveRules:
    """Per call: turns caller transcripts and agent replies into directives and audit entries."""

    def __init__(
        self,
        call: call_pb2.CallStarted,
        dnc: DncStore,
        *,
        transfer_available: bool,
        transfer_target: str = "",
        escalation: EscalationConfig | None = None,
        recording: RecordingConfig | None = None,
        open_at: Callable[[datetime], bool] | None = None,
    ) -> None:
        self.number = caller_number(call)
        ours = party_number(call.to_uri if call.direction != call_pb2.DIRECTION_OUTBOUND else call.from_uri)
        self.plan = plan_recording([n for n in (self.number, ours) if n], config=recording)
        self.recording = RecordingSession(self.plan)
        self.dnc = dnc
        self.transfer_available = transfer_available
        self.open_at = open_at  # the business's opening hours: nobody to transfer to outside them
        self.transfer_target = transfer_target
        self.escalation = EscalationDetector(escalation)
        self.finished = False  # opt-out or escalation handed the call on: act on nothing more
        self.recording_announced = False
        self._misunderstood = False

    # --- agent side ---------------------------------------------------------------------------
    def on_agent_text(self, text: str) -> None:
        if _MISUNDERSTOOD.search(text):
            self._misunderstood = True

    def on_playback_done(self) -> Verdict | None:
        """The first agent utterance has played: time for the recording notice or question."""
        if self.recording_announced or self.finished:
            return None
        self.recording_announced = True
        rule = "recording_notice" if self.plan.mode is RecordingMode.NOTICE_ONLY else "recording_consent"
        audit = None
        if self.plan.mode is RecordingMode.NOTICE_ONLY:
            audit = AuditEntry(
                policy_pb2.DECISION_ALLOW,
                "recording",
                "one_party_notice",
                self.plan.reason,
                self.number or "",
                {"regions": ",".join(self.plan.regions)},
            )
        return Verdict(self._directive(control_pb2.DIRECTIVE_ACTION_SAY, self.plan.text, rule, 0), audit)

    # --- caller side --------------------------------------------------------------------------
    def on_transcript(self, text: str, turn_id: int, now: datetime) -> list[Verdict]:
        """One final caller transcript; the verdicts to publish, in order."""
        if self.finished or not text.strip():
            return []
        opt_out = self._opt_out(text, turn_id, now)
        if opt_out is not None:
            return [opt_out]
        out: list[Verdict] = []
        recording = self._recording(text, turn_id)
        if recording is not None:
            out.append(recording)
        escalation = self._escalation(text, turn_id, now)
        if escalation is not None:
            out.append(escalation)
        else:
            identity = self._identity(text, turn_id)
            if identity is not None:
                out.append(identity)
        return out

    def _identity(self, text: str, turn_id: int) -> Verdict | None:
        phrase = detect_identity_question(text)
        if phrase is None:
            return None
        whole = only_identity_question(text)
        audit = AuditEntry(
            policy_pb2.DECISION_ALLOW,
            "disclosure",
            "identity_question",
            "caller asked whether the agent is a person; told it is an AI",
            self.number or "",
            {"phrase": phrase, "whole_turn": str(whole).lower(), **_said(text)},
        )
        action = control_pb2.DIRECTIVE_ACTION_SAY_AS_ANSWER if whole else control_pb2.DIRECTIVE_ACTION_SAY
        return Verdict(self._directive(action, IDENTITY_ANSWER, "identity_question", turn_id), audit)

    def _opt_out(self, text: str, turn_id: int, now: datetime) -> Verdict | None:
        result = handle_opt_out(text, self.number, self.dnc, now)
        if result is None:
            return None
        self.finished = True
        reason = (
            "caller opted out; number added to the internal do-not-call list"
            if result.recorded
            else "caller opted out; number unknown or not stored"
        )
        details = {"phrase": result.phrase, "recorded": str(result.recorded).lower(), **_said(text)}
        audit = AuditEntry(
            policy_pb2.DECISION_DENY, "opt_out", "internal_dnc", reason, self.number or "", details
        )
        directive = self._directive(
            control_pb2.DIRECTIVE_ACTION_SAY_AND_HANG_UP, result.confirmation, "opt_out", turn_id
        )
        return Verdict(directive, audit)

    def _recording(self, text: str, turn_id: int) -> Verdict | None:
        before = self.recording.state
        if before is RecordingState.AWAITING_CONSENT and not self.recording_announced:
            return None  # the question has not been asked yet
        after = self.recording.on_answer(text)
        if after is RecordingState.AWAITING_CONSENT and self.recording.ask_again:
            return Verdict(
                self._directive(
                    control_pb2.DIRECTIVE_ACTION_SAY, self.plan.text, "recording_consent", turn_id
                )
            )
        if after is before:
            return None
        if after is RecordingState.RECORDING:
            entry = AuditEntry(
                policy_pb2.DECISION_ALLOW,
                "recording",
                "consent_given",
                "caller agreed to recording",
                self.number or "",
                _said(text),
            )
        elif before is RecordingState.AWAITING_CONSENT:
            entry = AuditEntry(
                policy_pb2.DECISION_DENY,
                "recording",
                "consent_refused",
                "caller did not agree to recording",
                self.number or "",
                _said(text),
            )
        else:
            entry = AuditEntry(
                policy_pb2.DECISION_DENY,
                "recording",
                "caller_stopped",
                "caller asked to stop recording",
                self.number or "",
                _said(text),
            )
        return Verdict(audit=entry)

    def humans_available(self, now: datetime) -> tuple[bool, str]:
        """Whether a person can take the call now, and if not, why."""
        if not self.transfer_available:
            return False, "no_transfer_target"
        if self.open_at is not None and not self.open_at(now):
            return False, "outside_business_hours"
        return True, ""

    def _escalation(self, text: str, turn_id: int, now: datetime) -> Verdict | None:
        understood, self._misunderstood = not self._misunderstood, False
        available, why_not = self.humans_available(now)
        decision = self.escalation.on_turn(text, understood, humans_available=available)
        if decision is None:
            return None
        self.finished = decision.action is EscalationAction.TRANSFER
        if decision.action is EscalationAction.TRANSFER:
            action, speech = control_pb2.DIRECTIVE_ACTION_SAY_AND_TRANSFER, TRANSFER_TEXT
        else:
            action, speech = control_pb2.DIRECTIVE_ACTION_TAKE_MESSAGE, TAKE_MESSAGE_TEXT
        details = {"action": decision.action.value, "matched": decision.matched, **_said(text)}
        if why_not:
            details["unavailable"] = why_not
        audit = AuditEntry(
            policy_pb2.DECISION_ALLOW,
            "escalation",
            decision.reason,
            f"escalation: {decision.action.value}",
            self.number or "",
            details,
        )
        return Verdict(self._directive(action, speech, decision.reason, turn_id), audit)

    def _directive(self, action: int, text: str, rule: str, turn_id: int) -> control_pb2.PolicyDirective:
        target = self.transfer_target if action == control_pb2.DIRECTIVE_ACTION_SAY_AND_TRANSFER else ""
        return control_pb2.PolicyDirective(
            action=action,  # type: ignore[arg-type]
            text=text,
            target=target,
            rule=rule,
            turn_id=turn_id,
        )
