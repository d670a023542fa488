"""The gRPC CallControl API (operators and integrations), served by the records service.

PlaceCall asks policy first, over the bus (every dial is approved or denied, and the decision
audited) and only then asks an edge replica to dial. HangUp and TransferCall go to the call's
control lane. StartCampaign, GetCampaign, ExportCampaign and CancelCampaign run outbound
campaigns inside this service (:mod:`phoneagent.records.campaign_api`). ListCalls and GetCall
read the durable call records that the records worker folds from the ``PA_CALLS`` and
``PA_AUDIT`` streams (:mod:`phoneagent.records`), so they answer with whole calls (turns,
tools, decisions, recording, summary) and survive restarts.
When ``PA_API_TOKEN`` is set every call must carry ``authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from phoneagent.records.builder import CallRecord
from phoneagent.records.callinfo import to_call_info
from phoneagent.records.campaign_api import CampaignManager
from phoneagent.records.store import RecordStore
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Lane
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.numbers import normalize_e164
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

    async def _auth(self, context: grpc.aio.ServicerContext) -> None:
        if not self.token:
            return
        meta = dict(context.invocation_metadata() or ())
        given = str(meta.get("authorization", ""))
        if not hmac.compare_digest(given, f"Bearer {self.token}"):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API token")

    async def _record(self, call_id: str, context: grpc.aio.ServicerContext) -> CallRecord | None:
        try:
            subjects.check_id(call_id)
            return await asyncio.to_thread(self.records.get, call_id)
        except PhoneAgentError as exc:
            await self._fail(context, exc)
            raise

    async def _fail(self, context: grpc.aio.ServicerContext, exc: PhoneAgentError) -> None:
        await context.abort(_GRPC_CODES.get(exc.kind, grpc.StatusCode.INTERNAL), exc.message)

    async def PlaceCall(
        self,
        request: control_api_pb2.PlaceCallRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.PlaceCallResponse:
        await self._auth(context)
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

    async def _control(self, call_id: str, context: grpc.aio.ServicerContext, **kind: Any) -> None:
        """Publish a ControlEvent carrying ``kind`` (``hangup=...``) on a call in progress."""
        rec = await self._record(call_id, context)
        if rec is None or rec.ended or not rec.started_unix_ns:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such call in progress")
        event = control_pb2.ControlEvent(meta=new_meta(call_id, "api"), **kind)
        await self.bus.publish(subjects.control(call_id), event, lane=Lane.CONTROL)

    async def HangUp(
        self,
        request: control_api_pb2.HangUpRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.HangUpResponse:
        await self._auth(context)
        hangup = control_pb2.Hangup(reason=call_pb2.END_REASON_OPERATOR_HANGUP, detail="operator")
        await self._control(request.call_id, context, hangup=hangup)
        return control_api_pb2.HangUpResponse()

    async def TransferCall(
        self,
        request: control_api_pb2.TransferCallRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.TransferCallResponse:
        await self._auth(context)
        if not request.target:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "target is required")
        kind = control_pb2.TRANSFER_KIND_WARM if request.warm else control_pb2.TRANSFER_KIND_BLIND
        transfer = control_pb2.Transfer(target=request.target, kind=kind, reason="operator")
        await self._control(request.call_id, context, transfer=transfer)
        return control_api_pb2.TransferCallResponse()

    async def ListCalls(
        self,
        request: control_api_pb2.ListCallsRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.ListCallsResponse:
        await self._auth(context)
        limit = min(request.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        try:
            recs = await asyncio.to_thread(self.records.records, limit, request.active_only)
        except PhoneAgentError as exc:
            await self._fail(context, exc)
            raise
        details = not request.omit_details
        return control_api_pb2.ListCallsResponse(calls=[to_call_info(r, details) for r in recs])

    async def GetCall(
        self,
        request: control_api_pb2.GetCallRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.CallInfo:
        await self._auth(context)
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
        await self._auth(context)
        if self.campaigns is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "campaigns are not served here")
        assert self.campaigns is not None
        try:
            result = action(self.campaigns)
            return await result if inspect.isawaitable(result) else result
        except PhoneAgentError as exc:
            await self._fail(context, exc)
            raise

    async def StartCampaign(
        self,
        request: control_api_pb2.StartCampaignRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.CampaignStatus:
        status: control_api_pb2.CampaignStatus = await self._on_campaigns(context, lambda m: m.start(request))
        return status

    async def GetCampaign(
        self,
        request: control_api_pb2.GetCampaignRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.CampaignStatus:
        status: control_api_pb2.CampaignStatus = await self._on_campaigns(
            context, lambda m: m.status(request.campaign_id)
        )
        return status

    async def ExportCampaign(
        self,
        request: control_api_pb2.ExportCampaignRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.ExportCampaignResponse:
        csv_text: str = await self._on_campaigns(context, lambda m: m.export_csv(request.campaign_id))
        return control_api_pb2.ExportCampaignResponse(csv=csv_text)

    async def CancelCampaign(
        self,
        request: control_api_pb2.CancelCampaignRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.CampaignStatus:
        status: control_api_pb2.CampaignStatus = await self._on_campaigns(
            context, lambda m: m.cancel(request.campaign_id)
        )
        return status


async def serve(servicer: CallControl, host: str, port: int) -> tuple[Any, int]:
    server = grpc.aio.server()
    control_api_pb2_grpc.add_CallControlServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise PhoneAgentError(ErrorKind.UNAVAILABLE, f"cannot listen on {host}:{port}")
    await server.start()
    return server, bound
