"""Running an outbound campaign over the bus (``phone-agent campaign start`` and the API).

The runner lives in the process that starts the campaign (the CLI, or the records service for
the gRPC API) and talks to the other services only through the bus, so it needs no state in
policy or the edge, and a campaign stops when its process stops.
:class:`~phoneagent.records.campaign.CampaignPacer` decides who is dialled when (concurrency,
calls per minute, retries with back-off). Each attempt:

1. asks policy for a decision (``dial_check``: the outbound rules of
   :mod:`phoneagent.policy.outbound`; every decision is audited by the policy service). A
   denial is final (the contact's result is ``denied`` with the rule's reason, nothing is
   dialled), except outside the calling window: the contact is ``deferred`` to when the window
   opens in its time zone(s) and checked again then;
2. asks an edge replica to dial (``edge_dial``: CallStarted with the number, the campaign id,
   the allowing decision's id, whose one-time approval the edge consumes, and the contact's
   custom fields as labels);
3. follows the call's lifecycle to its CallEnded and reports the outcome to the pacer:
   answered calls are ``completed`` (``voicemail`` when the edge says so), SIP busy is ``busy``,
   no answer or a cancel before answer is ``no_answer``, anything else ``failed``.

Answering machines: the ``amd`` mode travels to the edge as the label ``amd``; the edge
reports a detected machine as END_REASON_VOICEMAIL.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

from phoneagent.records.campaign import (
    CampaignPacer,
    Contact,
    ContactResult,
    Outcome,
    PacingConfig,
    next_window_open,
)
from phoneagent.runtime import subjects
from phoneagent.runtime.areacodes import time_zones_for
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.dial_approvals import CALL_ID_HEADER
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.redact import mask_number
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import call_pb2, control_pb2, policy_pb2

log = logging.getLogger(__name__)


class AmdMode(enum.StrEnum):
    HANGUP = "hangup"
    LEAVE_MESSAGE = "leave-message"
    WAIT = "wait"


@dataclass(frozen=True)
class RunnerConfig:
    campaign_id: str
    purpose: str
    pacing: PacingConfig
    amd: AmdMode = AmdMode.HANGUP
    # Voicemail text for leave-message mode; a contact's own "message" column wins.
    voicemail_message: str = ""
    agent: str = ""  # agent name for the calls; empty = the edge's default
    request_timeout_s: float = 5.0
    call_timeout_s: float = 3700.0  # a call that reports no end by then is hung up and counted failed
    # The policy's calling window (PA_CALL_WINDOW_*), to know when to check again; a window
    # denial that names the policy's window ("window" detail) wins over these.
    window_start: dtime = dtime(8, 0)
    window_end: dtime = dtime(21, 0)
    window_margin: timedelta = timedelta(minutes=1)  # re-check this long after the window opens
    # Shortest wait after a window denial, should the window above still disagree with policy:
    # each check is an audit record, so a contact is never re-checked every minute.
    window_recheck_min: timedelta = timedelta(minutes=15)
    max_idle_s: float = 1.0  # the run loop looks at the clock at least this often

    def __post_init__(self) -> None:
        subjects.check_id(self.campaign_id, "campaign id")
        if not self.purpose.strip():
            raise InvalidArgument("a campaign needs a purpose (consent is checked against it)")
        if self.request_timeout_s <= 0 or self.call_timeout_s <= 0:
            raise InvalidArgument("timeouts must be positive")


_ANSWERED_OUTCOMES = {call_pb2.END_REASON_VOICEMAIL: Outcome.VOICEMAIL}
_UNANSWERED_OUTCOMES = {
    call_pb2.END_REASON_BUSY: Outcome.BUSY,
    call_pb2.END_REASON_NO_ANSWER: Outcome.NO_ANSWER,
    call_pb2.END_REASON_CANCELLED: Outcome.NO_ANSWER,
    call_pb2.END_REASON_VOICEMAIL: Outcome.VOICEMAIL,
}


def outcome_of(answered: bool, ended: call_pb2.CallEnded) -> Outcome:
    """The campaign outcome of one finished call."""
    if answered:
        return _ANSWERED_OUTCOMES.get(ended.reason, Outcome.COMPLETED)
    return _UNANSWERED_OUTCOMES.get(ended.reason, Outcome.FAILED)


class _CallWatch:
    """Lifecycle of one dialled call, fed by its lifecycle subject."""

    def __init__(self) -> None:
        self.answered = False
        self.ended: call_pb2.CallEnded | None = None
        self.done = asyncio.Event()

    async def on_event(self, ev: call_pb2.CallEvent, _: Delivery) -> None:
        kind = ev.WhichOneof("event")
        if kind == "answered":
            self.answered = True
        elif kind == "ended":
            self.ended = ev.ended
            self.done.set()


Progress = Callable[[Contact, Outcome, str], None]
Clock = Callable[[], datetime]
WINDOW_RULE = "calling_window"


@dataclass(frozen=True)
class _Deferred:
    until: datetime
    reason: str


def parse_window(text: str) -> tuple[dtime, dtime] | None:
    """``"09:30-18:00"`` as (start, end); None when empty or not of that form."""
    try:
        start, end = (dtime.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        return None
    return (start, end) if start < end else None


class CampaignRunner:
    def __init__(
        self,
        bus: Bus,
        contacts: Iterable[Contact],
        config: RunnerConfig,
        progress: Progress | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.bus = bus
        self.config = config
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.pacer = CampaignPacer(contacts, config.pacing, clock=self.clock)
        self.progress = progress
        self._changed = asyncio.Event()
        self._tasks = TaskOwner(f"campaign:{config.campaign_id}")

    async def run(self) -> list[ContactResult]:
        """Dial every contact to a final outcome; return the results (one per contact)."""
        try:
            while not self.pacer.finished:
                contact = self.pacer.next_contact()
                if contact is not None:
                    self._tasks.spawn(self._attempt(contact), "attempt")
                    continue
                wake = self.pacer.next_wake()
                if wake is None and self.pacer.in_progress == 0:
                    break  # nothing running and nothing scheduled: cannot happen unless a report was lost
                timeout = self.config.max_idle_s  # also notices clock jumps
                if wake is not None:
                    timeout = min(timeout, max(0.0, (wake - self.clock()).total_seconds()))
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except TimeoutError:
                    pass
        finally:
            await self._tasks.close(timeout=5.0)
        return self.pacer.results()

    async def _attempt(self, contact: Contact) -> None:
        try:
            result = await self._check_and_dial(contact)
        except Exception as exc:  # noqa: BLE001 - one bad attempt must not stop the campaign
            log.error(
                "campaign attempt crashed", exc_info=exc, extra={"campaign_id": self.config.campaign_id}
            )
            result = Outcome.FAILED, "internal error"
        if isinstance(result, _Deferred):
            self.pacer.defer(contact.number, result.until, result.reason)
            log.info(
                "campaign contact deferred",
                extra={
                    "campaign_id": self.config.campaign_id,
                    "callee": mask_number(contact.number),
                    "until": result.until.isoformat(),
                },
            )
            self._changed.set()
            return
        outcome, reason = result
        self.pacer.report(contact.number, outcome, reason)
        log.info(
            "campaign attempt finished",
            extra={
                "campaign_id": self.config.campaign_id,
                "callee": mask_number(contact.number),
                "outcome": outcome.value,
            },
        )
        if self.progress is not None:
            self.progress(contact, outcome, reason)
        self._changed.set()

    async def _check_and_dial(self, contact: Contact) -> tuple[Outcome, str] | _Deferred:
        check = policy_pb2.DialCheck(
            number=contact.number,
            time_zone=contact.time_zone or "",
            campaign_id=self.config.campaign_id,
            purpose=contact.purpose or self.config.purpose,
        )
        call_id = subjects.new_call_id()  # policy audits under it and signs it into the approval
        try:
            decision = await self.bus.request(
                subjects.dial_check(),
                check,
                policy_pb2.PolicyDecision,
                timeout=self.config.request_timeout_s,
                headers={CALL_ID_HEADER: call_id},
            )
        except PhoneAgentError as exc:  # fail closed: no decision, no call
            return Outcome.DENIED, f"policy check failed ({exc.kind.name.lower()})"
        if decision.decision != policy_pb2.DECISION_ALLOW:
            reason = f"{decision.rule}: {decision.reason}"
            if decision.rule == WINDOW_RULE:
                until = self._window_opens(contact, decision.details.get("window", ""))
                if until is not None:
                    return _Deferred(until, reason)
            return Outcome.DENIED, reason
        return await self._dial(contact, call_id, decision.decision_id)

    def _window_opens(self, contact: Contact, policy_window: str) -> datetime | None:
        """When the contact's calling window next opens (plus a margin); None when unknown.

        ``policy_window`` (``HH:MM-HH:MM`` from the denial) is the window policy applied; when it
        is missing or unreadable the runner's own window is used. If that says the window is
        open although policy denied, the re-check waits ``window_recheck_min``.
        """
        try:
            zones = time_zones_for(contact.number, contact.time_zone)
        except InvalidArgument:
            return None
        cfg = self.config
        start, end = parse_window(policy_window) or (cfg.window_start, cfg.window_end)
        now = self.clock()
        opens = next_window_open(now, zones, start, end)
        if opens is None:
            return None
        if opens <= now:  # our window says open, policy said closed: do not ask again at once
            return now + cfg.window_recheck_min
        return opens + cfg.window_margin

    def _call_request(self, contact: Contact, call_id: str, decision_id: str) -> call_pb2.CallStarted:
        started = call_pb2.CallStarted(
            meta=new_meta(call_id, "campaign"),
            direction=call_pb2.DIRECTION_OUTBOUND,
            to_uri=contact.number,
            agent=self.config.agent,
            campaign_id=self.config.campaign_id,
            dial_decision_id=decision_id,  # the edge dials only with policy's approval
        )
        if self.config.voicemail_message:
            started.labels["message"] = self.config.voicemail_message
        started.labels.update({k: v for k, v in contact.fields.items() if v})
        started.labels.update(
            {"purpose": contact.purpose or self.config.purpose, "amd": self.config.amd.value}
        )
        if contact.name:
            started.labels["name"] = contact.name
        return started

    async def _dial(self, contact: Contact, call_id: str, decision_id: str) -> tuple[Outcome, str]:
        watch = _CallWatch()
        sub = await self.bus.subscribe(
            subjects.lifecycle(call_id), call_pb2.CallEvent, watch.on_event, lane=Lane.CONTROL
        )
        try:
            try:
                reply = await self.bus.request(
                    subjects.edge_dial(),
                    self._call_request(contact, call_id, decision_id),
                    control_pb2.ControlEvent,
                    timeout=self.config.request_timeout_s,
                )
            except PhoneAgentError as exc:
                return Outcome.FAILED, f"no edge accepted the call ({exc.kind.name.lower()})"
            if reply.WhichOneof("kind") == "error":
                return Outcome.FAILED, f"edge refused: {reply.error.message[:120]}"
            try:
                await asyncio.wait_for(watch.done.wait(), self.config.call_timeout_s)
            except TimeoutError:
                await self._hang_up(call_id)
                return Outcome.FAILED, "call reported no end in time; hung up"
            assert watch.ended is not None
            return outcome_of(watch.answered, watch.ended), watch.ended.detail[:120]
        finally:
            await self.bus.unsubscribe(sub)

    async def _hang_up(self, call_id: str) -> None:
        ev = control_pb2.ControlEvent(
            meta=new_meta(call_id, "campaign"),
            hangup=control_pb2.Hangup(
                reason=call_pb2.END_REASON_MAX_DURATION, detail="campaign call timeout"
            ),
        )
        try:
            await self.bus.publish(subjects.control(call_id), ev, lane=Lane.CONTROL)
        except PhoneAgentError:
            log.warning("campaign hangup not sent", extra={"call_id": call_id})
