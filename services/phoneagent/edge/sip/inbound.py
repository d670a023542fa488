"""How the user agent answers what arrives outside its own requests (the RFC 3261 transaction
user): ACKs and requests inside a dialog go to the dialog, CANCEL ends a ringing call, a new
INVITE is admitted (trunk source allow-list, per-source rate limit, capacity, digest auth,
Require, SDP) or refused, OPTIONS is answered, any other method gets 405/501, and every request
outside a dialog from a source no trunk lists gets 403. :class:`InboundRequests` is a base of
:class:`~phoneagent.edge.sip.ua.UserAgent`, which owns the state it uses."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from phoneagent.edge.sip.calls import IncomingCall
from phoneagent.edge.sip.dialog import Dialog
from phoneagent.edge.sip.headers import ParseError
from phoneagent.edge.sip.message import SipRequest, SipResponse, make_response
from phoneagent.edge.sip.sdp import NoCommonCodec, SdpError, answer, parse_sdp
from phoneagent.edge.sip.sockets import Peer
from phoneagent.edge.sip.transaction import ServerTransaction, TransactionLayer
from phoneagent.edge.sip.trunks import SourceRateLimit, Trunk, TrunkTable
from phoneagent.runtime.metrics import SIP_REFUSED
from phoneagent.runtime.redact import mask_number

if TYPE_CHECKING:
    from phoneagent.edge.sip.ua import UAConfig, UserAgent

log = logging.getLogger(__name__)

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REFER", "NOTIFY", "INFO")
KNOWN_NOT_ALLOWED = frozenset({"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "PRACK", "UPDATE"})
IncomingCallback = Callable[[IncomingCall], Awaitable[None] | None]


def _refused(reason: str, status: int) -> tuple[int, list[tuple[str, str]]]:
    SIP_REFUSED.labels(reason=reason).inc()
    return status, []


class InboundRequests:
    """The inbound half of the user agent (its state lives in UserAgent)."""

    config: UAConfig
    layer: TransactionLayer
    on_incoming_call: IncomingCallback | None
    _dialogs: dict[tuple[str, str, str], Dialog]
    _pending: dict[tuple[str, str], IncomingCall]
    _closing: bool

    if TYPE_CHECKING:

        @property
        def active_calls(self) -> int: ...

        @staticmethod
        def new_tag() -> str: ...

        def spawn(self, aw: Awaitable[Any]) -> None: ...

    # --- transaction user -----------------------------------------------------------------
    def on_stray_response(self, response: SipResponse, peer: Peer) -> None:
        key = (response.call_id, response.from_.tag, response.to.tag)
        dialog = self._dialogs.get(key)
        if dialog is not None and response.cseq.method == "INVITE" and 200 <= response.status < 300:
            dialog.resend_ack()

    def on_request(self, req: SipRequest, txn: ServerTransaction | None, peer: Peer) -> None:
        if txn is None:  # an ACK for a 2xx
            dialog = self._dialogs.get((req.call_id, req.to.tag, req.from_.tag))
            if dialog is not None:
                dialog.on_ack(req)
            return
        hops = req.headers.get("Max-Forwards")
        if hops is not None and not (hops.isdigit() and int(hops) <= 255):
            txn.respond(make_response(req, 400, "Bad Max-Forwards"))
            return
        if hops is not None and int(hops) == 0 and req.method != "OPTIONS":
            txn.respond(make_response(req, 483))  # OPTIONS may still be answered (RFC 3261 section 11)
            return
        try:
            self._dispatch(req, txn, peer)
        except (ParseError, SdpError) as exc:
            log.info("sip request rejected: malformed", extra={"reason": exc.message, "method": req.method})
            if not txn.final_sent:
                txn.respond(make_response(req, 400))

    def _dispatch(self, req: SipRequest, txn: ServerTransaction, peer: Peer) -> None:
        if req.method == "CANCEL":
            self._on_cancel(req, txn)
        elif req.to.tag:
            dialog = self._dialogs.get((req.call_id, req.to.tag, req.from_.tag))
            if dialog is None:
                txn.respond(make_response(req, 481))
            else:
                dialog.handle(req, txn)
        elif req.method == "INVITE":
            self._on_invite(req, txn, peer)
        elif not self.source_allowed(peer.addr[0]):
            SIP_REFUSED.labels(reason="unknown_source").inc()
            txn.respond(make_response(req, 403))
        elif req.method == "OPTIONS":
            txn.respond(self.options_response(req))
        elif req.method in ("BYE", "NOTIFY", "REFER", "INFO"):
            txn.respond(make_response(req, 481))
        else:
            self.reject_method(req, txn)

    def reject_method(self, req: SipRequest, txn: ServerTransaction) -> None:
        if req.method in KNOWN_NOT_ALLOWED or req.method in ALLOWED_METHODS:
            resp = make_response(req, 405)
            resp.headers.add("Allow", ", ".join(ALLOWED_METHODS))
        else:
            resp = make_response(req, 501)
        txn.respond(resp)

    def options_response(self, req: SipRequest) -> SipResponse:
        resp = make_response(req, 200, to_tag=self.new_tag())
        resp.headers.add("Allow", ", ".join(ALLOWED_METHODS))
        resp.headers.add("Accept", "application/sdp")
        resp.headers.add("Supported", "replaces")
        resp.headers.add("Server", self.config.user_agent)
        return resp

    def _on_cancel(self, req: SipRequest, txn: ServerTransaction) -> None:
        invite_txn = self.layer.find_server(req, "INVITE")
        if invite_txn is None:
            txn.respond(make_response(req, 481))
            return
        txn.respond(make_response(req, 200))
        call = self._pending.get((req.call_id, req.from_.tag))
        if call is not None:
            call.cancel_received()
        elif not invite_txn.final_sent:
            invite_txn.respond(make_response(invite_txn.request, 487, to_tag=self.new_tag()))
        log.info("sip call cancelled by caller", extra={"call_id": req.call_id})

    def _on_invite(self, req: SipRequest, txn: ServerTransaction, peer: Peer) -> None:
        status, extra = self._admission(req, peer.addr[0])
        if status is not None:
            resp = make_response(req, status, to_tag=self.new_tag())
            for name, value in extra:
                resp.headers.add(name, value)
            txn.respond(resp)
            log.info("sip call refused", extra={"call_id": req.call_id, "status": status})
            return
        remote_sdp = parse_sdp(req.body) if req.body else None
        call = IncomingCall(cast("UserAgent", self), req, txn, peer, remote_sdp, self.new_tag())
        self._pending[(call.call_id, call.caller.tag)] = call
        log.info(
            "sip incoming call",
            extra={
                "call_id": call.call_id,
                "caller": mask_number(call.caller.uri.user),
                "transport": peer.transport,
            },
        )
        self.spawn(self._run_incoming(call))

    def _admission(self, req: SipRequest, source: str) -> tuple[int | None, list[tuple[str, str]]]:
        """The status refusing this INVITE (None: offer it to the application) and the headers
        that go with it. Who may call is decided first, so an unknown source costs no more."""
        if self._closing or self.on_incoming_call is None:
            return (480 if self.on_incoming_call is None else 503), [("Retry-After", "5")]
        trunks = self.config.trunks
        candidates = trunks.for_source(source) if trunks is not None else None
        if candidates == []:
            return _refused("unknown_source", 403)
        limit = self.config.invite_limit
        wait = limit.take(source) if limit is not None else 0.0
        if wait:
            SIP_REFUSED.labels(reason="rate_limited").inc()
            return 503, [("Retry-After", str(SourceRateLimit.retry_after(wait)))]
        if self.active_calls >= self.config.max_calls:
            return self.config.overload_status, [("Retry-After", "5")]
        refused = self._authenticate(req, candidates)
        if refused is not None:
            return refused
        if req.headers.get_all("Require"):
            return 420, [("Unsupported", ", ".join(req.headers.get_all("Require")))]
        if req.body:
            if req.content_type != "application/sdp":
                return 415, []
            try:
                # the trunk's SRTP policy is applied when the call is answered
                answer(parse_sdp(req.body), self.config.codecs, address="0.0.0.0", port=9, srtp="optional")
            except SdpError:
                return 400, []
            except NoCommonCodec:
                return 488, []
        return None, []

    def _authenticate(
        self, req: SipRequest, candidates: list[Trunk] | None
    ) -> tuple[int, list[tuple[str, str]]] | None:
        """Digest for an INVITE that needs it: without trunks whenever ``auth`` is set, with trunks
        when every trunk the source may be asks for a username. None: it may go on."""
        auth = self.config.auth
        if candidates is None:
            if auth is None:
                return None
        elif not TrunkTable.needs_digest(candidates):
            return None
        elif auth is None:  # trunks with usernames but nothing to check them with
            return _refused("auth_failed", 403)
        header = req.headers.get("Authorization")
        result = auth.verify("INVITE", header) if header else None
        if result is None or not result.ok:
            if result is not None and not result.stale:
                SIP_REFUSED.labels(reason="auth_failed").inc()
            stale = bool(result and result.stale)
            return 401, [("WWW-Authenticate", auth.challenge(stale=stale))]
        if candidates is not None and result.username not in {t.username for t in candidates}:
            return _refused("wrong_trunk", 403)  # a trunk's credentials from another trunk's address
        return None

    def source_allowed(self, source: str) -> bool:
        trunks = self.config.trunks
        return trunks is None or bool(trunks.for_source(source))

    async def _run_incoming(self, call: IncomingCall) -> None:
        assert self.on_incoming_call is not None
        try:
            result = self.on_incoming_call(call)
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001 - answer 500 instead of leaving the caller hanging
            log.exception("sip incoming call handler failed", extra={"call_id": call.call_id})
            if call.pending:
                await call.reject(500)
