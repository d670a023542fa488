"""Outbound calls: a CallStarted request on ``edge_dial`` is checked (target, capacity, the
policy's one-time approval), its sessions claimed and the call placed through the trunk or
straight to a SIP URI; busy, no answer and failure end it with the matching reason.
:class:`OutboundCalls` is a base of :class:`~phoneagent.edge.service.EdgeService`, which owns the
call plumbing it uses."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from phoneagent.audio.g722 import codec_rate
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import (
    CallFailed,
    CallOutcome,
    Credentials,
    Dialog,
    DialogHandlers,
    NoCommonCodec,
    ParseError,
    SipURI,
    UserAgent,
    negotiated,
    offer,
)
from phoneagent.runtime import dial_approvals, streams, subjects
from phoneagent.runtime.approvals import Verifier
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.dial_approvals import DialNotApproved
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError, Unavailable
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.metrics import DIALS_REFUSED
from phoneagent.runtime.redact import mask_number
from phoneagent.v1 import call_pb2, common_pb2, control_pb2

if TYPE_CHECKING:
    from phoneagent.edge.service import ActiveCall

log = logging.getLogger(__name__)
MAX_DIAL_TARGET_CHARS = 256  # a SIP URI or number; longer is hostile and would not fit a UDP INVITE

_OUTCOME_REASON = {
    CallOutcome.BUSY: call_pb2.END_REASON_BUSY,
    CallOutcome.NO_ANSWER: call_pb2.END_REASON_NO_ANSWER,
    CallOutcome.FAILED: call_pb2.END_REASON_FAILED,
    CallOutcome.CANCELLED: call_pb2.END_REASON_CANCELLED,
}


class OutboundCalls:
    """The dialling half of the edge service (its state and call plumbing live in EdgeService)."""

    bus: Bus
    settings: EdgeSettings
    ua: UserAgent | None
    calls: dict[str, ActiveCall]
    accepting: bool
    _approvals: Any
    verifier: Verifier

    if TYPE_CHECKING:

        def _new_call(self, started: call_pb2.CallStarted, rtp: RtpSession) -> ActiveCall: ...

        async def _start_call(self, active: ActiveCall) -> bool: ...

        def _track(self, active: ActiveCall) -> None: ...

        def _handlers(self, active: ActiveCall) -> DialogHandlers: ...

        async def _connected(self, active: ActiveCall, dialog: Dialog) -> None: ...

        def _started(
            self, call_id: str, direction: int, from_uri: str, to_uri: str, codec: str, playout_rate: int
        ) -> call_pb2.CallStarted: ...

    # --- outbound ---------------------------------------------------------------------------------
    def _dial_target(self, to: str) -> SipURI:
        to = to.strip()
        if len(to) > MAX_DIAL_TARGET_CHARS:
            raise InvalidArgument(f"dial target is longer than {MAX_DIAL_TARGET_CHARS} characters")
        try:
            if to.lower().startswith(("sip:", "sips:")):
                return SipURI.parse(to)
            if not self.settings.trunk_uri:
                raise InvalidArgument("no SIP trunk configured for dialling numbers (PA_SIP_TRUNK_URI)")
            number = "".join(ch for ch in to.removeprefix("tel:") if ch.isdigit() or ch == "+")
            if len(number.lstrip("+")) < 3:
                raise InvalidArgument("dial target is not a number or SIP URI")
            trunk = SipURI.parse(self.settings.trunk_uri)
            return SipURI(trunk.scheme, trunk.host, number, trunk.port, dict(trunk.params))
        except ParseError:
            raise InvalidArgument("dial target is not a number or SIP URI") from None

    async def _on_dial(self, started: call_pb2.CallStarted, _: Delivery) -> control_pb2.ControlEvent:
        try:
            return await self._accept_dial(started)
        except PhoneAgentError as exc:
            log.info("dial refused", extra={"error_kind": exc.kind.name, "reason": exc.message})
            error = common_pb2.Error(
                kind=exc.kind.wire,  # type: ignore[arg-type]
                retryable=exc.kind.retryable,
                message=exc.message,
                source="edge",
            )
            return control_pb2.ControlEvent(meta=new_meta("", "edge"), error=error)

    async def _accept_dial(self, req: call_pb2.CallStarted) -> control_pb2.ControlEvent:
        call_id = subjects.check_id(req.meta.call_id)
        target = self._dial_target(req.to_uri)
        if not self.accepting:
            raise Unavailable("edge is draining")
        if len(self.calls) >= self.settings.max_calls or call_id in self.calls:
            raise PhoneAgentError(ErrorKind.OVERLOADED, "edge at its call limit")
        if self.settings.require_dial_approval:
            await self._redeem_approval(call_id, req)
        assert self.ua is not None
        rtp = await RtpSession.open(
            self.settings.sip_host, self.settings.rtp_port_min, self.settings.rtp_port_max, call_id
        )
        rtp.set_rate(codec_rate(self.settings.codec_names[0]))  # before the callee picks a codec
        started = call_pb2.CallStarted()
        started.CopyFrom(req)
        started.MergeFrom(
            self._started(
                call_id,
                call_pb2.DIRECTION_OUTBOUND,
                str(self.ua.local_uri()),
                req.to_uri,
                self.settings.codec_names[0],
                rtp.sample_rate,
            )
        )
        started.agent = req.agent or started.agent
        active = self._new_call(started, rtp)
        if not await self._start_call(active):
            raise Unavailable("a stage could not take the call")
        self._track(active)
        active.dialing = active.call.tasks.spawn(self._dial(active, target), "dial")
        log.info("outbound call placed", extra={"call_id": call_id, "callee": mask_number(target.user)})
        return control_pb2.ControlEvent(meta=new_meta(call_id, "edge"))

    async def _redeem_approval(self, call_id: str, req: call_pb2.CallStarted) -> None:
        """Consume the policy's one-time approval for this dial; refuse without one (fail closed)."""
        try:
            if self._approvals is None:
                try:
                    self._approvals = await streams.dial_approvals_kv(self.bus.jetstream())
                except Exception:
                    raise DialNotApproved("unavailable", "approvals could not be read") from None
            await dial_approvals.redeem(
                self._approvals, self.verifier, req.dial_decision_id, call_id, req.to_uri
            )
        except DialNotApproved as exc:
            DIALS_REFUSED.labels(reason=exc.reason).inc()
            log.warning(
                "dial not approved by policy",
                extra={"call_id": call_id, "reason": exc.reason, "decision_id": req.dial_decision_id[:64]},
            )
            raise

    async def _dial(self, active: ActiveCall, target: SipURI) -> None:
        assert self.ua is not None
        s = self.settings
        creds = Credentials(s.trunk_username, s.trunk_password) if s.trunk_username else None
        local = offer(s.advertised, active.rtp.port, s.codec_names, srtp=s.trunk_srtp)
        try:
            dialog = await self.ua.call(
                target, local, creds, handlers=self._handlers(active), timeout_s=s.no_answer_timeout_s
            )
        except CallFailed as exc:
            await active.call.end(_OUTCOME_REASON[exc.outcome], f"sip {exc.status}")
            return
        try:
            if dialog.remote_sdp is None:
                raise NoCommonCodec("answer without SDP")
            params = negotiated(dialog.remote_sdp, local)
        except NoCommonCodec:
            active.transport.attach(dialog)
            await active.transport.hangup("no common codec")
            await active.call.end(call_pb2.END_REASON_FAILED, "no common codec")
            return
        active.rtp.start(params, latch=s.rtp_latch)
        # CallStarted named the first of PA_CODECS (published before the callee chose); the
        # callee's choice goes out in CallAnswered and in this line for the operator
        log.info(
            "outbound call answered",
            extra={"call_id": active.call.call_id, "codec": params.codec, "srtp": params.srtp is not None},
        )
        await self._connected(active, dialog)
