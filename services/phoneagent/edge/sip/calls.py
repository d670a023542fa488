"""Call set-up: an inbound call waiting for an answer, and an outbound INVITE until answer or failure."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from phoneagent.edge.sip.auth import Credentials, authorization_header
from phoneagent.edge.sip.dialog import Dialog, DialogHandlers
from phoneagent.edge.sip.headers import Headers, NameAddr, ParseError, SipURI
from phoneagent.edge.sip.message import SipRequest, SipResponse, make_response
from phoneagent.edge.sip.sdp import SdpError, SessionDescription, parse_sdp
from phoneagent.edge.sip.sockets import Peer
from phoneagent.edge.sip.transaction import ClientTransaction, ServerTransaction, new_branch
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError

if TYPE_CHECKING:
    from phoneagent.edge.sip.ua import UserAgent

log = logging.getLogger(__name__)


class CallOutcome(enum.Enum):
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CallFailed(PhoneAgentError):
    """An outbound call ended before it was answered."""

    def __init__(self, outcome: CallOutcome, status: int, message: str = "") -> None:
        kind = ErrorKind.CANCELLED if outcome is CallOutcome.CANCELLED else ErrorKind.UNAVAILABLE
        super().__init__(kind, message or f"call {outcome.value} ({status})")
        self.outcome = outcome
        self.status = status


def outcome_for(status: int) -> CallOutcome:
    if status in (486, 600):
        return CallOutcome.BUSY
    if status in (408, 480):
        return CallOutcome.NO_ANSWER
    if status == 487:
        return CallOutcome.CANCELLED
    return CallOutcome.FAILED


class IncomingCall:
    """An INVITE waiting for our decision: ``ring()``, then ``answer(sdp)`` or ``reject(code)``."""

    def __init__(
        self,
        ua: UserAgent,
        req: SipRequest,
        txn: ServerTransaction,
        peer: Peer,
        remote_sdp: SessionDescription | None,
        local_tag: str,
    ) -> None:
        self.ua = ua
        self.request = req
        self.txn = txn
        self.peer = peer
        self.call_id = req.call_id
        self.caller: NameAddr = req.from_
        self.callee: NameAddr = req.to
        self.remote_sdp = remote_sdp
        self.local_tag = local_tag
        self.cancelled = asyncio.Event()
        self.dialog: Dialog | None = None

    @property
    def secure(self) -> bool:
        """The caller asked for a sips: URI: our Contact is sips: too."""
        return self.request.uri.scheme == "sips"

    @property
    def pending(self) -> bool:
        return not self.txn.final_sent and not self.cancelled.is_set()

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise CallFailed(CallOutcome.CANCELLED, 487, "caller cancelled")
        if self.txn.final_sent:
            raise InvalidArgument("call already answered or rejected")

    async def ring(self, early_sdp: SessionDescription | None = None) -> None:
        """Send 180 Ringing, or 183 Session Progress with early media when ``early_sdp`` is given."""
        self._check()
        resp = make_response(self.request, 183 if early_sdp else 180, to_tag=self.local_tag)
        resp.headers.add("Contact", str(self.ua.contact(self.peer.transport, secure=self.secure)))
        if early_sdp is not None:
            resp.headers.add("Content-Type", "application/sdp")
            resp.body = early_sdp.encode()
        self.txn.respond(resp)

    async def answer(self, local_sdp: SessionDescription, handlers: DialogHandlers | None = None) -> Dialog:
        """Send 200 OK with our SDP; the dialog is confirmed when the ACK arrives (``dialog.confirmed``)."""
        self._check()
        resp = make_response(self.request, 200, to_tag=self.local_tag)
        resp.headers.add("Contact", str(self.ua.contact(self.peer.transport, secure=self.secure)))
        resp.headers.add("Content-Type", "application/sdp")
        resp.body = local_sdp.encode()
        dialog = await self.ua.dialog_for_incoming(self, local_sdp, handlers)
        self.txn.respond(resp)
        dialog.start_ok_retransmit(resp, self.txn)
        self.dialog = dialog
        self.ua.call_settled(self)
        return dialog

    async def reject(self, code: int = 486) -> None:
        if not 300 <= code <= 699:
            raise InvalidArgument("reject code must be 3xx-6xx")
        self._check()
        resp = make_response(self.request, code, to_tag=self.local_tag)
        if code == 503:
            resp.headers.add("Retry-After", "5")
        self.txn.respond(resp)
        self.ua.call_settled(self)

    def cancel_received(self) -> None:
        """The caller sent CANCEL: answer the INVITE with 487 (called by the user agent)."""
        if self.txn.final_sent:
            return
        self.txn.respond(make_response(self.request, 487, to_tag=self.local_tag))
        self.cancelled.set()
        self.ua.call_settled(self)


def out_of_dialog_request(
    ua: UserAgent, method: str, target: SipURI, peer: Peer, local: NameAddr, call_id: str, seq: int
) -> SipRequest:
    """A request outside any dialog (RFC 3261 section 8.1.1): INVITE, OPTIONS."""
    headers = Headers()
    headers.add("Via", str(ua.via(peer.transport, new_branch())))
    headers.add("Max-Forwards", "70")
    headers.add("From", str(local))
    headers.add("To", str(NameAddr(target)))
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{seq} {method}")
    headers.add("Contact", str(ua.contact(peer.transport, secure=target.scheme == "sips")))
    headers.add("User-Agent", ua.config.user_agent)
    return SipRequest(headers=headers, method=method, uri=target)


class OutboundCall:
    """One outbound INVITE and its retries for authentication, until a dialog or a CallFailed."""

    def __init__(
        self,
        ua: UserAgent,
        target: SipURI,
        local_sdp: SessionDescription,
        credentials: Credentials | None,
        peer: Peer,
        *,
        timeout_s: float,
        handlers: DialogHandlers | None,
        on_progress: Callable[[int, SessionDescription | None], Any] | None,
    ) -> None:
        self.ua = ua
        self.target = target
        self.local_sdp = local_sdp
        self.credentials = credentials
        self.peer = peer
        self.timeout_s = timeout_s
        self.handlers = handlers
        self.on_progress = on_progress
        self.call_id = ua.new_call_id()
        self.local = NameAddr(ua.local_uri(), ua.config.display_name, {"tag": ua.new_tag()})
        self.seq = 0
        self.dialog: Dialog | None = None
        self._events: asyncio.Queue[SipResponse | None] = asyncio.Queue()
        self._cancel = asyncio.Event()
        self._txn: ClientTransaction | None = None
        self._invite: SipRequest | None = None
        self._got_provisional = False
        self._cancel_sent = False

    def cancel(self) -> None:
        """Abandon the call before it is answered (CANCEL is sent once the peer has answered 1xx)."""
        self._cancel.set()

    def _build_invite(self, auth: tuple[str, str] | None) -> SipRequest:
        self.seq += 1
        req = out_of_dialog_request(
            self.ua, "INVITE", self.target, self.peer, self.local, self.call_id, self.seq
        )
        req.headers.add("Allow", ", ".join(self.ua.allowed_methods))
        if auth is not None:
            req.headers.add(auth[0], auth[1])
        req.headers.add("Content-Type", "application/sdp")
        req.body = self.local_sdp.encode()
        return req

    async def run(self) -> Dialog:
        auth: tuple[str, str] | None = None
        for _attempt in range(3):
            self._invite = self._build_invite(auth)
            self._txn = await self.ua.layer.request(
                self._invite, self.peer, self._on_response, lambda: self._events.put_nowait(None)
            )
            final = await self._wait_final()
            if 200 <= final.status < 300:
                return await self._confirm(final)
            auth = self._auth_for(final, auth is not None)
            if auth is None:
                raise CallFailed(outcome_for(final.status), final.status)
        raise CallFailed(CallOutcome.FAILED, 401, "authentication failed")

    async def _wait_final(self) -> SipResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        cancelled_by: CallOutcome | None = None
        while True:
            remaining = deadline - loop.time()
            if cancelled_by is None and (self._cancel.is_set() or remaining <= 0):
                cancelled_by = CallOutcome.CANCELLED if self._cancel.is_set() else CallOutcome.NO_ANSWER
                deadline = loop.time() + 64 * self.ua.timers.t1  # for the 487 to arrive
                await self.send_cancel()
                continue
            if remaining <= 0:
                raise CallFailed(cancelled_by or CallOutcome.NO_ANSWER, 408, "no final response")
            got = await self._next_event(remaining, watch_cancel=cancelled_by is None)
            if got is False:
                continue  # timed out or cancel requested: handled at the top of the loop
            if got is None:
                raise CallFailed(cancelled_by or CallOutcome.NO_ANSWER, 408)
            resp: SipResponse = got  # type: ignore[assignment]
            if resp.status < 200:
                self._provisional(resp)
                if cancelled_by is not None:
                    await self.send_cancel()
                continue
            if cancelled_by is not None and resp.status >= 300:
                raise CallFailed(cancelled_by, resp.status)
            return resp

    async def _next_event(self, wait_s: float, *, watch_cancel: bool) -> SipResponse | None | bool:
        """The next response (None: the transaction timed out), or False on timeout / cancel request."""
        get = asyncio.ensure_future(self._events.get())
        waiters: set[asyncio.Future[Any]] = {get}
        if watch_cancel:
            waiters.add(asyncio.ensure_future(self._cancel.wait()))
        try:
            await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if waiter is not get or not get.done():
                    waiter.cancel()
        return get.result() if get.done() and not get.cancelled() else False

    async def send_cancel(self) -> None:
        """CANCEL the INVITE (once, and only after a provisional response: RFC 3261 section 9.1)."""
        if not self._got_provisional or self._cancel_sent or self._invite is None:
            return
        self._cancel_sent = True
        inv = self._invite
        headers = Headers()
        headers.add("Via", inv.headers.get("Via") or "")
        headers.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            headers.add(name, inv.headers.get(name) or "")
        headers.add("CSeq", f"{inv.cseq.seq} CANCEL")
        cancel = SipRequest(headers=headers, method="CANCEL", uri=inv.uri)
        self.ua.spawn(self.ua.transact(cancel, self.peer))

    def _on_response(self, resp: SipResponse) -> None:
        if self.dialog is not None and 200 <= resp.status < 300:
            self.dialog.resend_ack()  # a retransmitted 2xx: our ACK was lost
        else:
            self._events.put_nowait(resp)

    def _provisional(self, resp: SipResponse) -> None:
        self._got_provisional = True  # from now on a CANCEL may be sent
        if resp.status == 100:
            return
        sdp = None
        if resp.body and resp.content_type == "application/sdp":
            try:
                sdp = parse_sdp(resp.body)
            except SdpError:
                log.info("sip early sdp unparseable", extra={"call_id": self.call_id})
        if self.on_progress is not None:
            try:
                self.on_progress(resp.status, sdp)
            except Exception:  # noqa: BLE001 - a progress callback must not break the call
                log.exception("sip progress callback failed", extra={"call_id": self.call_id})

    def _auth_for(self, resp: SipResponse, retried: bool) -> tuple[str, str] | None:
        if resp.status not in (401, 407) or self.credentials is None or self._invite is None:
            return None
        name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        reply = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        challenge = resp.headers.get(name) or ""
        stale = "stale=true" in challenge.replace(" ", "").lower()
        if retried and not stale:
            return None
        try:
            value = authorization_header(challenge, "INVITE", str(self._invite.uri), self.credentials)
        except ParseError:
            log.info("sip challenge unusable", extra={"call_id": self.call_id})
            return None
        return reply, value

    async def _confirm(self, resp: SipResponse) -> Dialog:
        try:
            remote_sdp = parse_sdp(resp.body) if resp.body else None
        except SdpError:
            remote_sdp = None
            log.info("sip answer sdp unparseable", extra={"call_id": self.call_id})
        contact = resp.contact
        routes = list(reversed(resp.headers.get_all("Record-Route")))
        remote_target = contact.uri if contact else self.target
        peer = await self.ua.peer_for(routes, remote_target)
        dialog = Dialog(
            self.ua,
            call_id=self.call_id,
            local=self.local,
            remote=resp.to,
            remote_target=remote_target,
            route_set=routes,
            local_seq=self.seq,
            remote_seq=0,
            peer=peer,
            local_sdp=self.local_sdp,
            remote_sdp=remote_sdp,
            outbound=True,
            handlers=self.handlers,
            credentials=self.credentials,
        )
        ack = dialog.make_request("ACK")
        ack.headers.set("CSeq", f"{self.seq} ACK")
        dialog.set_ack(ack)
        dialog.resend_ack()
        dialog.confirmed.set()
        self.ua.register_dialog(dialog)
        self.dialog = dialog
        if remote_sdp is None:
            log.info("sip call answered without sdp", extra={"call_id": self.call_id})
        if self._cancel_sent:
            self.ua.spawn(dialog.bye())
            raise CallFailed(CallOutcome.CANCELLED, 487, "answered after cancel")
        return dialog
