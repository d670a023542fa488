"""The gRPC CallControl API (operators and integrations), served by the records service.

PlaceCall asks policy first, over the bus (every dial is approved or denied, and the decision
audited) and only then asks an edge replica to dial. HangUp goes to the call's control lane;
TransferCall asks policy to approve the target first (``transfer_check``, the same rules as the
dialog's transfers) and the Transfer carries policy's signed approval, without which the edge
does not transfer. StartCampaign, GetCampaign, ExportCampaign and CancelCampaign run outbound
campaigns inside this service (:mod:`phoneagent.records.campaign_api`). ListCalls and GetCall
read the durable call records that the records worker folds from the ``PA_CALLS`` and
``PA_AUDIT`` streams (:mod:`phoneagent.records`), so they answer with whole calls (turns,
tools, decisions, recording, summary) and survive restarts.
When ``PA_API_TOKEN`` is set every call must carry ``authorization: Bearer <token>`` (the
service refuses to start without one on an address other than loopback). Every call, refused
or not, is audited to ``PA_AUDIT`` (subject ``api``: the method, the caller's token id - a
digest prefix, never the token - and the outcome), under the call's id when it names one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from phoneagent.records.builder import API_AUDIT_SUBJECT, CallRecord
from phoneagent.records.callinfo import to_call_info
from phoneagent.records.campaign_api import CampaignManager
from phoneagent.records.store import RecordStore
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Lane
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.metrics import ERRORS
from phoneagent.runtime.numbers import normalize_e164
from phoneagent.runtime.redact import mask_number
from phoneagent.runtime.transfers import request_transfer
from phoneagent.v1 import (
    call_pb2,
    control_api_pb2,
    control_api_pb2_grpc,
    control_pb2,
    policy_pb2,
)

log = logging.getLogger(__name__)
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000

_GRPC_CODES = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.POLICY_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}

DialCheckFn = Callable[[policy_pb2.DialCheck, str], Awaitable[policy_pb2.PolicyDecision]]
Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])
LOOPBACK_CALLER = "loopback"  # no token configured (the API listens on loopback only)


def token_id(token: str) -> str:
    """How a token is named in the audit: 12 hex digits of its SHA-256 (never the token)."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def audited(method: Method) -> Method:
    """An API method that authenticates its caller first and is audited with its outcome."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: CallControl, request: Any, context: grpc.aio.ServicerContext) -> Any:
        call_id = str(getattr(request, "call_id", ""))
        caller = self._caller(context)
        outcome = "OK"
        try:
            if caller is None:
                outcome = grpc.StatusCode.UNAUTHENTICATED.name
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API token")
            response = await method(self, request, context)
            call_id = call_id or str(getattr(response, "call_id", ""))
            decision = getattr(response, "decision", None)
            if (
                isinstance(decision, policy_pb2.PolicyDecision)
                and decision.decision != policy_pb2.DECISION_ALLOW
            ):
                outcome = "POLICY_DENIED"
            return response
        except BaseException:
            if outcome == "OK":
                code = context.code()
                outcome = code.name if isinstance(code, grpc.StatusCode) else "INTERNAL"
            raise
        finally:
            await self.audit(name, caller or "unauthenticated", call_id, outcome)

    return wrapper  # type: ignore[return-value]


class CallControl(control_api_pb2_grpc.CallControlServicer):
    def __init__(
        self,
        bus: Bus,
        records: RecordStore,
        dial_check: DialCheckFn,
        token: str = "",
        default_agent: str = "",
        campaigns: CampaignManager | None = None,
        producer: str = "records",
    ) -> None:
        self.bus = bus
        self.producer = producer
        self.records = records
        self.dial_check = dial_check
        self.token = token
        self.default_agent = default_agent
        self.campaigns = campaigns

    def _caller(self, context: grpc.aio.ServicerContext) -> str | None:
        """The caller's identity for the audit, or None when its token is missing or wrong."""
        if not self.token:
            return LOOPBACK_CALLER
        meta = dict(context.invocation_metadata() or ())
        given = str(meta.get("authorization", ""))
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return None
        return token_id(self.token)

    async def audit(self, method: str, caller: str, call_id: str, outcome: str) -> None:
        """One PA_AUDIT record per API call (never fails the call: a failed write is logged)."""
        try:
            subjects.check_id(call_id)
        except InvalidArgument:
            call_id = ""
        ok = outcome == "OK"
        record = policy_pb2.PolicyDecision(
            meta=new_meta(call_id, self.producer),
            decision_id=uuid.uuid4().hex,
            decision=policy_pb2.DECISION_ALLOW if ok else policy_pb2.DECISION_DENY,
            subject=API_AUDIT_SUBJECT,
            rule=method,
            reason=outcome,
            decided_unix_ns=time.time_ns(),
        )
        record.details.update({"method": method, "caller": caller, "outcome": outcome})
        try:
            await self.bus.jetstream().publish(
                subjects.audit(call_id or "none"), record.SerializeToString(), stream=subjects.AUDIT_STREAM
            )
        except Exception:  # noqa: BLE001 - the API answers; the missing record is logged and counted
            ERRORS.labels(kind="api_audit").inc()
            log.exception("api call not audited", extra={"call_id": call_id or None, "method": method})

    async def _record(self, call_id: str, context: grpc.aio.ServicerContext) -> CallRecord | None:
        try:
            subjects.check_id(call_id)
            return await asyncio.to_thread(self.records.get, call_id)
        except PhoneAgentError as exc:
            await self._fail(context, exc)
            raise

    async def _fail(self, context: grpc.aio.ServicerContext, exc: PhoneAgentError) -> None:
        await context.abort(_GRPC_CODES.get(exc.kind, grpc.StatusCode.INTERNAL), exc.message)

    @audited
    async def PlaceCall(
        self,
        request: control_api_pb2.PlaceCallRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.PlaceCallResponse:
        call_id = subjects.new_call_id()
        check = policy_pb2.DialCheck(
            number=request.to,
            time_zone=request.time_zone,
            campaign_id=request.campaign_id,
            purpose=request.purpose,
        )
        try:
            decision = await self.dial_check(check, call_id)
        except PhoneAgentError as exc:
            await self._fail(context, exc)
            raise
        out = control_api_pb2.PlaceCallResponse(call_id=call_id, decision=decision)
        if decision.decision != policy_pb2.DECISION_ALLOW:
            return out
        started = call_pb2.CallStarted(
            meta=new_meta(call_id, self.producer),
            direction=call_pb2.DIRECTION_OUTBOUND,
            to_uri=normalize_e164(request.to),  # the number policy approved (dial_approvals)
            agent=request.agent or self.default_agent,
            campaign_id=request.campaign_id,
            dial_decision_id=decision.decision_id,
        )
        started.labels.update(dict(request.labels))
        try:
            reply = await self.bus.request(
                subjects.edge_dial(), started, control_pb2.ControlEvent, timeout=5.0
            )
        except PhoneAgentError as exc:
            await self._fail(context, PhoneAgentError(exc.kind, "no edge replica accepted the call"))
            raise
        if reply.WhichOneof("kind") == "error":
            await self._fail(
                context, PhoneAgentError(ErrorKind.from_wire(reply.error.kind), reply.error.message)
            )
        return out

    async def _in_progress(self, call_id: str) -> None:
        """Raises NOT_FOUND unless ``call_id`` is a call in progress."""
        subjects.check_id(call_id)
        rec = await asyncio.to_thread(self.records.get, call_id)
        if rec is None or rec.ended or not rec.started_unix_ns:
            raise PhoneAgentError(ErrorKind.NOT_FOUND, "no such call in progress")

    async def hang_up(self, call_id: str) -> None:
        """Hang up a call in progress (its control lane); the gRPC HangUp and the operator
        console both come here. Raises :class:`PhoneAgentError` (NOT_FOUND when it is not)."""
        await self._in_progress(call_id)
        hangup = control_pb2.Hangup(reason=call_pb2.END_REASON_OPERATOR_HANGUP, detail="operator")
        event = control_pb2.ControlEvent(meta=new_meta(call_id, "api"), hangup=hangup)
        await self.bus.publish(subjects.control(call_id), event, lane=Lane.CONTROL)

    async def transfer(self, call_id: str, target: str, warm: bool) -> None:
        """Transfer a call in progress to ``target`` once policy approves it (TransferCall and the
        operator console). Raises :class:`PhoneAgentError`: INVALID_ARGUMENT without a target,
        NOT_FOUND, POLICY_DENIED naming the rule, or policy's unavailability."""
        if not target:
            raise InvalidArgument("target is required")
        await self._in_progress(call_id)
        kind = control_pb2.TRANSFER_KIND_WARM if warm else control_pb2.TRANSFER_KIND_BLIND
        try:
            decision = await request_transfer(
                self.bus, call_id, target, kind=kind, reason="operator", producer="api"
            )
        except PhoneAgentError as exc:
            raise PhoneAgentError(exc.kind, "policy could not be asked about the transfer") from None
        if decision.decision != policy_pb2.DECISION_ALLOW:
            log.info(
                "transfer denied by policy",
                extra={"call_id": call_id, "rule": decision.rule, "callee": mask_number(target)},
            )
            raise PhoneAgentError(
                ErrorKind.POLICY_DENIED, f"transfer not allowed by policy ({decision.rule})"
            )

    async def _act(self, context: grpc.aio.ServicerContext, action: Awaitable[None]) -> None:
        try:
            await action
        except PhoneAgentError as exc:
            await self._fail(context, exc)
            raise

    @audited
    async def HangUp(
        self,
        request: control_api_pb2.HangUpRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.HangUpResponse:
        await self._act(context, self.hang_up(request.call_id))
        return control_api_pb2.HangUpResponse()

    @audited
    async def TransferCall(
        self,
        request: control_api_pb2.TransferCallRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.TransferCallResponse:
        await self._act(context, self.transfer(request.call_id, request.target, request.warm))
        return control_api_pb2.TransferCallResponse()

    @audited
    async def ListCalls(
        self,
        request: control_api_pb2.ListCallsRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.ListCallsResponse:
        limit = min(request.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        try:
            recs = await asyncio.to_thread(self.records.records, limit, request.active_only)
        except PhoneAgentError as exc:
            await self._fail(context, exc)
            raise
        details = not request.omit_details
        return control_api_pb2.ListCallsResponse(calls=[to_call_info(r, details) for r in recs])

    @audited
    async def GetCall(
        self,
        request: control_api_pb2.GetCallRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.CallInfo:
        rec = await self._record(request.call_id, context)
        if rec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such call")
        assert rec is not None
        return to_call_info(rec)

    # --- campaigns ----------------------------------------------------------------------------
    async def _on_campaigns(
        self, context: grpc.aio.ServicerContext, action: Callable[[CampaignManager], Any]
    ) -> Any:
        """Run ``action`` on the campaign manager (awaited when it is a coroutine); its errors
        become gRPC status codes."""
        if self.campaigns is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "campaigns are not served here")
        assert self.campaigns is not None
        try:
            result = action(self.campaigns)
            return await result if inspect.isawaitable(result) else result
        except PhoneAgentError as exc:
            await self._fail(context, exc)
            raise

    @audited
    async def StartCampaign(
        self,
        request: control_api_pb2.StartCampaignRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.CampaignStatus:
        status: control_api_pb2.CampaignStatus = await self._on_campaigns(context, lambda m: m.start(request))
        return status

    @audited
    async def GetCampaign(
        self,
        request: control_api_pb2.GetCampaignRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.CampaignStatus:
        status: control_api_pb2.CampaignStatus = await self._on_campaigns(
            context, lambda m: m.status(request.campaign_id)
        )
        return status

    @audited
    async def ExportCampaign(
        self,
        request: control_api_pb2.ExportCampaignRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.ExportCampaignResponse:
        csv_text: str = await self._on_campaigns(context, lambda m: m.export_csv(request.campaign_id))
        return control_api_pb2.ExportCampaignResponse(csv=csv_text)

    @audited
    async def CancelCampaign(
        self,
        request: control_api_pb2.CancelCampaignRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.CampaignStatus:
        status: control_api_pb2.CampaignStatus = await self._on_campaigns(
            context, lambda m: m.cancel(request.campaign_id)
        )
        return status


async def serve(
    servicer: CallControl, host: str, port: int, tls: tuple[bytes, bytes] | None = None
) -> tuple[Any, int]:
    """Serve the API on ``host:port``; with ``tls`` (certificate chain and key, PEM) over TLS."""
    server = grpc.aio.server()
    control_api_pb2_grpc.add_CallControlServicer_to_server(servicer, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tls is not None:
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([(tls[1], tls[0])]))
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise PhoneAgentError(ErrorKind.UNAVAILABLE, f"cannot listen on {host}:{port}")
    await server.start()
    return server, bound
