"""The gRPC CallControl API (operators and integrations), served by the policy service.

PlaceCall asks policy first (every dial is approved or denied, and the decision audited)
and only then asks an edge replica to dial. HangUp and TransferCall go to the call's
control lane. ListCalls and GetCall read a call index built from the ``PA_CALLS`` stream,
so it is complete after a restart. When ``PA_API_TOKEN`` is set every call must carry
``authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Lane
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.redact import mask_number
from phoneagent.v1 import (
    call_pb2,
    common_pb2,
    control_api_pb2,
    control_api_pb2_grpc,
    control_pb2,
    policy_pb2,
)

log = logging.getLogger(__name__)
MAX_INDEX = 10_000

_GRPC_CODES = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.POLICY_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}

DialCheckFn = Callable[[policy_pb2.DialCheck, str], Awaitable[policy_pb2.PolicyDecision]]


class CallIndex:
    """Calls seen on the lifecycle stream, newest last (bounded)."""

    def __init__(self, limit: int = MAX_INDEX) -> None:
        self.limit = limit
        self.calls: OrderedDict[str, control_api_pb2.CallInfo] = OrderedDict()

    def apply(self, event: call_pb2.CallEvent) -> None:
        kind = event.WhichOneof("event")
        if kind is None:
            return
        inner = getattr(event, kind)
        call_id = inner.meta.call_id
        info = self.calls.get(call_id)
        if info is None:
            info = control_api_pb2.CallInfo(call_id=call_id)
            self.calls[call_id] = info
            while len(self.calls) > self.limit:
                self.calls.popitem(last=False)
        if kind == "started":
            s = event.started
            remote = s.from_uri if s.direction == call_pb2.DIRECTION_INBOUND else s.to_uri
            info.direction, info.transport, info.agent = s.direction, s.transport, s.agent
            info.remote_hint, info.campaign_id = mask_number(remote), s.campaign_id
            info.started_unix_ns = s.meta.ts_unix_ns
        elif kind == "answered":
            info.answered_unix_ns = inner.meta.ts_unix_ns
        elif kind == "ended":
            info.ended_unix_ns = inner.meta.ts_unix_ns or time.time_ns()
            info.end_reason = event.ended.reason

    def list(self, active_only: bool, limit: int) -> list[control_api_pb2.CallInfo]:
        rows = [c for c in reversed(self.calls.values()) if not (active_only and c.ended_unix_ns)]
        return rows[: limit or 100]


class CallControl(control_api_pb2_grpc.CallControlServicer):
    def __init__(
        self, bus: Bus, index: CallIndex, dial_check: DialCheckFn, token: str = "", default_agent: str = ""
    ) -> None:
        self.bus = bus
        self.index = index
        self.dial_check = dial_check
        self.token = token
        self.default_agent = default_agent

    async def _auth(self, context: grpc.aio.ServicerContext) -> None:
        if not self.token:
            return
        meta = dict(context.invocation_metadata() or ())
        given = str(meta.get("authorization", ""))
        if not hmac.compare_digest(given, f"Bearer {self.token}"):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API token")

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
            meta=common_pb2.EventMeta(call_id=call_id, ts_unix_ns=time.time_ns(), producer="policy"),
            direction=call_pb2.DIRECTION_OUTBOUND,
            to_uri=request.to,
            agent=request.agent or self.default_agent,
            campaign_id=request.campaign_id,
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

    async def _control(
        self, call_id: str, event: control_pb2.ControlEvent, context: grpc.aio.ServicerContext
    ) -> None:
        try:
            subjects.check_id(call_id)
        except PhoneAgentError as exc:
            await self._fail(context, exc)
        info = self.index.calls.get(call_id)
        if info is None or info.ended_unix_ns:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such call in progress")
        event.meta.CopyFrom(common_pb2.EventMeta(call_id=call_id, ts_unix_ns=time.time_ns(), producer="api"))
        event.survives_interrupt = True
        await self.bus.publish(subjects.control(call_id), event, lane=Lane.CONTROL)

    async def HangUp(
        self,
        request: control_api_pb2.HangUpRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.HangUpResponse:
        await self._auth(context)
        ev = control_pb2.ControlEvent(
            hangup=control_pb2.Hangup(reason=call_pb2.END_REASON_OPERATOR_HANGUP, detail="operator")
        )
        await self._control(request.call_id, ev, context)
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
        ev = control_pb2.ControlEvent(
            transfer=control_pb2.Transfer(target=request.target, kind=kind, reason="operator")
        )
        await self._control(request.call_id, ev, context)
        return control_api_pb2.TransferCallResponse()

    async def ListCalls(
        self,
        request: control_api_pb2.ListCallsRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.ListCallsResponse:
        await self._auth(context)
        return control_api_pb2.ListCallsResponse(calls=self.index.list(request.active_only, request.limit))

    async def GetCall(
        self,
        request: control_api_pb2.GetCallRequest,  # noqa: N802
        context: grpc.aio.ServicerContext,
    ) -> control_api_pb2.CallInfo:
        await self._auth(context)
        info = self.index.calls.get(request.call_id)
        if info is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such call")
        assert info is not None
        return info


async def serve(servicer: CallControl, host: str, port: int) -> tuple[Any, int]:
    server = grpc.aio.server()
    control_api_pb2_grpc.add_CallControlServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise PhoneAgentError(ErrorKind.UNAVAILABLE, f"cannot listen on {host}:{port}")
    await server.start()
    return server, bound
