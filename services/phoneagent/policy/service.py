"""Policy service: the compliance gate of every call, outbound dial approvals and the audit.

* Per call (claimed from the ``policy`` queue group): every sentence the model wants to say
  arrives on the call's ``reply`` subject and is published for speech on ``say`` only after
  policy has seen it; the first utterance of a call is rewritten to start with the AI
  disclosure. If this service is down nothing is said (fail closed). The same session applies
  the live rules of :mod:`phoneagent.policy.live` (opt-out, escalation, recording consent) to
  the caller's final transcripts and tells the dialog what to say with a ``PolicyDirective``
  on the control lane; each decision is audited.
* Stored copies: after the live message has gone on, a redacted copy of each approved
  sentence (by the session), transcript and tool record (by the replica's
  :class:`~.record_copy.RecordCopier`, which outlives the sessions, so nothing queued at
  hang-up is lost) goes on the call's ``record.*`` subjects, the only copy PA_CALLS keeps.
* Outbound: ``dial_check`` requests (queue group; from the records service's API and
  campaigns) are evaluated by the rules in :mod:`phoneagent.policy.outbound`; every decision,
  allow or deny, goes to ``PA_AUDIT``, and an allowed one leaves a signed one-time dial approval.
* Transfers: ``transfer_check`` requests (from the dialog and the API) are allowed for the
  agent's transfer target and allow-list, otherwise only when the target passes the dial rules;
  an allowed one is answered with a signed approval the edge requires on the Transfer event.
* What the edge acts on (dial and transfer approvals, recording decisions) is signed with the
  key only policy holds (``PA_POLICY_SIGNING_KEY_FILE``, :mod:`phoneagent.runtime.approvals`).

Call records, webhooks, summaries, the CallControl API and campaigns are the records service's
(:mod:`phoneagent.records.service`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import BadRequestError

from phoneagent.agents.agent import Agent, load_agent
from phoneagent.agents.disclosure import build_disclosure
from phoneagent.policy.call_rules import EscalationConfig
from phoneagent.policy.outbound import DialRequest, OutboundConfig, evaluate_dial
from phoneagent.policy.record_copy import RecordCopier, RecordCopies
from phoneagent.policy.recording import RecordingConfig, parse_states
from phoneagent.policy.session import PolicyCallSession
from phoneagent.policy.settings import PolicySettings
from phoneagent.policy.stores import PolicyStores
from phoneagent.runtime import approvals, dial_approvals, redact, streams, subjects
from phoneagent.runtime.approvals import Grant, Signer, dial_key
from phoneagent.runtime.bus import Delivery
from phoneagent.runtime.dial_approvals import CALL_ID_HEADER
from phoneagent.runtime.enums import enum_name
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError, Unavailable
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.metrics import POLICY_DECISIONS
from phoneagent.runtime.numbers import normalize_e164
from phoneagent.runtime.redact import mask_number
from phoneagent.runtime.service import Service
from phoneagent.runtime.settings import CommonSettings, parse_hhmm
from phoneagent.v1 import policy_pb2, session_pb2

log = logging.getLogger(__name__)
SETTINGS = PolicySettings
MSG_ID = "Nats-Msg-Id"
# A decision is stored before what it allows goes on; while PA_AUDIT elects a new leader (a NATS
# server lost: seconds) it is tried again, each try waiting up to AUDIT_TRY_S for the answer.
AUDIT_DEADLINE_S = 20.0
AUDIT_TRY_S = 2.0


def _db_url(value: str) -> str:
    """``PA_POLICY_DB`` as the database layer takes it (a file path may start with ``~``)."""
    return value if "://" in value else str(Path(value).expanduser())


def transfer_targets(agent: Agent) -> frozenset[str]:
    """Where transfers go without the dial rules: the agent's target and allow-list (dial keys)."""
    if agent.transfer is None:
        return frozenset()
    return frozenset(dial_key(t) for t in (agent.transfer.target, *agent.transfer.allowed_targets) if t)


def _agent_transfer(agent: Agent) -> tuple[bool, str]:
    """Whether the agent has a human to transfer to, and where (from the agent YAML)."""
    transfer = agent.transfer
    if transfer is None or not transfer.available:
        return False, ""
    return True, transfer.target


def metric_rule(subject: str, rule: str) -> str:
    """The ``rule`` label of ``pa_policy_decisions_total``: dial rules as they are, the per-call
    ones with their subject (``opt_out/internal_dnc`` is not the dial rule ``internal_dnc``)."""
    return rule if subject == "dial" else f"{subject}/{rule}"


class PolicyService(Service):
    name = "policy"
    stage = "policy"

    def __init__(self, common: CommonSettings, settings: PolicySettings) -> None:
        super().__init__(common)
        self.settings = settings
        try:
            self.disclosure = build_disclosure(settings.disclosure_addition or None)
        except InvalidArgument as exc:
            raise InvalidArgument(f"PA_DISCLOSURE_ADDITION: {exc}") from None
        self.config = OutboundConfig(
            window_start=parse_hhmm(settings.window_start, "PA_CALL_WINDOW_START"),
            window_end=parse_hhmm(settings.window_end, "PA_CALL_WINDOW_END"),
            max_attempts_per_day=settings.max_attempts_per_day,
            max_attempts_total=settings.max_attempts_total,
        )
        self.stores: PolicyStores | None = None
        self.call_state: Any = None  # the pa_policy_calls bucket, once set up
        self.agent = load_agent(common.agent_path)
        self.record_copies = RecordCopies(self.bus, public=self.agent.public_words)
        self.record_copier = RecordCopier(self.bus, self.record_copies)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests pin it
        self.transfer_available, self.transfer_target = _agent_transfer(self.agent)
        self.escalation = EscalationConfig(
            max_misunderstood=self.agent.escalation.max_misunderstood,
            trigger_words=self.agent.escalation.trigger_words,
        )
        self.recording = RecordingConfig(all_party_states=parse_states(settings.all_party_states))
        self.transfer_targets = transfer_targets(self.agent)
        self.signer: Signer | None = None
        if settings.signing_key_file:
            try:
                self.signer = Signer.from_file(settings.signing_key_file)
            except InvalidArgument as exc:
                raise InvalidArgument(f"PA_POLICY_SIGNING_KEY_FILE: {exc}") from None

    def open_at(self, now: datetime) -> bool:
        """Whether a person takes transfers at ``now``: the agent's opening hours and closures in
        its time zone, or around the clock when its transfer target says ``hours: always``."""
        return self.agent.staffed_at(now)

    async def setup(self) -> None:
        # Loaded now, off the loop: the first call's stored copies must not pay for it.
        await asyncio.to_thread(redact.warm)
        found = await asyncio.to_thread(redact.public_phrases, self.agent.own_texts())
        self.record_copies.public = (*self.agent.public_words, *found)
        self.stores = await asyncio.to_thread(PolicyStores, _db_url(self.settings.db_path))
        self.call_state = await streams.policy_calls_kv(
            self.bus.jetstream(), ttl_s=self.common.call_state_ttl_s
        )
        await self.bus.serve(
            subjects.dial_check(), policy_pb2.DialCheck, self._on_dial_check, queue_group="policy"
        )
        await self.bus.serve(
            subjects.transfer_check(), policy_pb2.TransferCheck, self._on_transfer_check, queue_group="policy"
        )
        if self.signer is None:
            log.warning(
                "PA_POLICY_SIGNING_KEY_FILE not set: no approval is signed, so the edge will not "
                "dial, transfer or record"
            )
        else:
            log.info("approvals signed", extra={"key_id": self.signer.key_id})
        await self.record_copier.start()

    async def _on_dial_check(self, check: policy_pb2.DialCheck, d: Delivery) -> policy_pb2.PolicyDecision:
        call_id = d.headers.get(CALL_ID_HEADER, "")
        try:
            subjects.check_id(call_id)
        except InvalidArgument:
            call_id = "none"  # no call id, or not one: the decision is audited without a call
        return await self.decide(check, call_id)

    async def decide(self, check: policy_pb2.DialCheck, call_id: str) -> policy_pb2.PolicyDecision:
        """Evaluate an outbound dial, record the decision in the audit stream, return it."""
        assert self.stores is not None
        request = DialRequest(
            number=check.number,
            caller_id=check.caller_id or self.settings.caller_id or None,
            purpose=check.purpose,
            campaign_id=check.campaign_id,
            time_zone=check.time_zone or None,
        )
        decision = await asyncio.to_thread(
            evaluate_dial, request, datetime.now(UTC), self.stores, self.config
        )
        decision_id = uuid.uuid4().hex
        if decision.allowed:
            await asyncio.to_thread(self.stores.attempts.record, check.number, datetime.now(UTC))
            # The edge dials only with this one-time approval (fail closed when it cannot be stored).
            number = normalize_e164(check.number, self.config.default_country)
            await dial_approvals.approve(
                self.bus.jetstream(),
                self.signer,
                decision_id,
                "" if call_id == "none" else call_id,
                number,
                check.campaign_id,
            )
        return await self.audit(
            call_id,
            policy_pb2.DECISION_ALLOW if decision.allowed else policy_pb2.DECISION_DENY,
            "dial",
            decision.rule,
            decision.reason,
            number=check.number,
            campaign_id=check.campaign_id,
            details={k: str(v) for k, v in decision.details.items()},
            decision_id=decision_id,
        )

    async def _on_transfer_check(
        self, check: policy_pb2.TransferCheck, d: Delivery
    ) -> policy_pb2.PolicyDecision:
        call_id = d.headers.get(CALL_ID_HEADER, "")
        try:
            subjects.check_id(call_id)
        except InvalidArgument:
            return await self.audit(
                "none",
                policy_pb2.DECISION_DENY,
                "transfer",
                "call_id",
                "transfer check without a call id",
                number=check.target,
            )
        return await self.decide_transfer(check, call_id)

    async def decide_transfer(
        self, check: policy_pb2.TransferCheck, call_id: str
    ) -> policy_pb2.PolicyDecision:
        """May ``call_id`` be transferred to ``check.target``? Audited; an allowed one carries the
        signed approval that the edge requires on the Transfer event."""
        assert self.stores is not None
        target = check.target.strip()
        details: dict[str, str] = {"reason": check.reason[:120]} if check.reason else {}
        if not target or len(target) > 256:
            allowed, rule, reason = False, "target", "no usable transfer target"
        elif dial_key(target) in self.transfer_targets:
            allowed, rule, reason = True, "agent_transfer_target", "the agent's transfer target or allow-list"
        elif target.lower().startswith(("sip:", "sips:")):
            allowed, rule, reason = (
                False,
                "transfer_allow_list",
                "SIP target is not on the agent's allow-list",
            )
        else:  # a number not on the list: only if policy would dial it
            request = DialRequest(
                number=target,
                caller_id=self.settings.caller_id or None,
                purpose="transfer",
            )
            decision = await asyncio.to_thread(
                evaluate_dial, request, datetime.now(UTC), self.stores, self.config
            )
            allowed, rule, reason = decision.allowed, decision.rule, decision.reason
            details.update({k: str(v) for k, v in decision.details.items()})
        decision_id = uuid.uuid4().hex
        approval = None
        if allowed:
            if self.signer is None:
                allowed, rule, reason = False, "signing_key", "approvals cannot be signed (no signing key)"
            else:
                expires = approvals.now_ms() + int(approvals.TRANSFER_TTL_S * 1000)
                grant = Grant(approvals.TRANSFER, decision_id, call_id, target, "allow", expires)
                approval = self.signer.sign(grant)
        return await self.audit(
            call_id,
            policy_pb2.DECISION_ALLOW if allowed else policy_pb2.DECISION_DENY,
            "transfer",
            rule,
            reason,
            number=target,
            details=details,
            decision_id=decision_id,
            approval=approval,
        )

    def _sign_recording(self, record: policy_pb2.PolicyDecision) -> None:
        """A recording decision is signed: the edge records only on policy's word."""
        if self.signer is None or not record.meta.call_id:
            return
        expires = record.decided_unix_ns // 1_000_000 + int(approvals.RECORDING_TTL_S * 1000)
        grant = Grant(
            approvals.RECORDING,
            record.decision_id,
            record.meta.call_id,
            "",
            approvals.recording_decision(record),
            expires,
        )
        record.approval.CopyFrom(self.signer.sign(grant))

    async def audit(
        self,
        call_id: str,
        decision: int,
        subject: str,
        rule: str,
        reason: str,
        *,
        number: str = "",
        campaign_id: str = "",
        details: dict[str, str] | None = None,
        decision_id: str = "",
        approval: policy_pb2.Approval | None = None,
    ) -> policy_pb2.PolicyDecision:
        record = policy_pb2.PolicyDecision(
            meta=new_meta("" if call_id == "none" else call_id, f"policy/{self.replica}"),
            decision_id=decision_id or uuid.uuid4().hex,
            decision=enum_name(policy_pb2.Decision, decision),
            subject=subject,
            rule=rule,
            reason=reason,
            decided_unix_ns=time.time_ns(),
            number_hint=mask_number(number),
            campaign_id=campaign_id,
        )
        record.details.update(details or {})
        if approval is not None:
            record.approval.CopyFrom(approval)
        elif subject == "recording":
            self._sign_recording(record)
        await self._publish_audit(subjects.audit(call_id or "none"), record)
        POLICY_DECISIONS.labels(
            decision="allow" if decision == policy_pb2.DECISION_ALLOW else "deny",
            rule=metric_rule(subject, rule),
        ).inc()
        return record

    async def _publish_audit(self, subject: str, record: policy_pb2.PolicyDecision) -> None:
        """Store one decision in PA_AUDIT, trying again while the stream has no leader (a NATS
        server lost, its copies electing a new one) up to ``AUDIT_DEADLINE_S``. The decision id is
        the message id, so a try whose answer was lost is stored once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + AUDIT_DEADLINE_S
        delay = 0.1
        while True:
            left = deadline - loop.time()
            try:
                await self.bus.jetstream().publish(
                    subject,
                    record.SerializeToString(),
                    stream=subjects.AUDIT_STREAM,
                    timeout=max(0.1, min(AUDIT_TRY_S, left)),
                    headers={MSG_ID: record.decision_id},
                )
                return
            except BadRequestError:
                raise  # the stream refuses this message: trying again changes nothing
            except (NatsError, PhoneAgentError, TimeoutError) as exc:
                if deadline - loop.time() <= delay:
                    raise Unavailable("the audit stream did not store the decision") from exc
                log.warning(
                    "audit not stored yet; trying again",
                    extra={"call_id": record.meta.call_id, "error": type(exc).__name__},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def new_session(self, claim: session_pb2.SessionClaim, taken_over: bool) -> PolicyCallSession:
        return PolicyCallSession(self, claim, taken_over)

    async def _shutdown(self) -> None:
        """On SIGTERM the calls drain first, then the record copies still in the outbox are stored
        (they need the bus, which the shared shutdown closes before ``teardown``)."""
        timeout = self.common.drain_timeout_s
        if self.sessions is not None:
            try:
                await self.sessions.drain(timeout)  # the shared shutdown's drain then finds none
            except Exception as exc:
                log.warning("drain failed", exc_info=exc)
        await self.record_copier.stop()
        await self.record_copies.stop(timeout=max(1.0, min(timeout, 10.0)))
        await super()._shutdown()

    async def teardown(self) -> None:
        await self.record_copier.stop()
        await self.record_copies.stop(timeout=0.0)  # stored in _shutdown; the bus is closed now
        if self.stores is not None:
            self.stores.close()

    def status(self) -> dict[str, object]:
        return {
            "record_copies_published": self.record_copies.published,
            "record_copies_failed": self.record_copies.failed,
            "record_copies_pending": self.record_copies.pending,
        }
