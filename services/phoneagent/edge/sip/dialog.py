"""A confirmed (or early-confirmed) INVITE dialog: BYE, re-INVITE for hold, INFO digits; REFER with
NOTIFY sipfrag comes from its base in :mod:`phoneagent.edge.sip.refer`.

Our in-dialog requests answered 401/407 are sent again with the dialog's credentials (again once
more only when the nonce was stale), as the INVITE that set up the dialog was.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phoneagent.edge.sip.auth import Credentials, authorization_header
from phoneagent.edge.sip.headers import Headers, NameAddr, ParseError, SipURI
from phoneagent.edge.sip.message import SipRequest, SipResponse, make_response
from phoneagent.edge.sip.refer import DialogTransfer
from phoneagent.edge.sip.sdp import (
    MediaParams,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    answer,
    negotiated,
    parse_sdp,
)
from phoneagent.edge.sip.sockets import Peer, TransportError
from phoneagent.edge.sip.transaction import ServerTransaction, new_branch

if TYPE_CHECKING:
    from phoneagent.edge.sip.ua import UserAgent

log = logging.getLogger(__name__)


@dataclass
class DialogHandlers:
    """Callbacks for what the peer does in a dialog. Each may be a plain function or a coroutine."""

    on_bye: Callable[[Dialog], Any] | None = None
    on_hold: Callable[[Dialog, bool], Any] | None = None
    # The peer's re-INVITE carried SDP: the media as now negotiated (address, port, codec, direction).
    on_media: Callable[[Dialog, MediaParams], Any] | None = None
    # Blind transfer requested by the peer: return the final SIP status of the new call.
    on_refer: Callable[[Dialog, SipURI], Awaitable[int]] | None = None
    # A DTMF digit sent by SIP INFO (application/dtmf-relay or application/dtmf), for peers without RFC 4733.
    on_dtmf: Callable[[Dialog, str], Any] | None = None


class Dialog(DialogTransfer):
    def __init__(
        self,
        ua: UserAgent,
        *,
        call_id: str,
        local: NameAddr,
        remote: NameAddr,
        remote_target: SipURI,
        route_set: list[str],
        local_seq: int,
        remote_seq: int,
        peer: Peer,
        local_sdp: SessionDescription | None,
        remote_sdp: SessionDescription | None,
        outbound: bool,
        handlers: DialogHandlers | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.ua = ua
        self.call_id = call_id
        self.local = local
        self.remote = remote
        self.remote_target = remote_target
        # RFC 3261 section 12.1: a dialog set up with sips: URIs keeps sips: Contacts
        self.secure = remote_target.scheme == "sips" or local.uri.scheme == "sips"
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.peer = peer
        self.local_sdp = local_sdp
        self.remote_sdp = remote_sdp
        self.outbound = outbound
        self.handlers = handlers or DialogHandlers()
        self.credentials = credentials  # answer the peer's digest challenges to our requests
        self.held = False
        self.confirmed = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason = ""
        self._ack: SipRequest | None = None
        self._ok: tuple[SipResponse, ServerTransaction] | None = None
        self._ok_timer: asyncio.TimerHandle | None = None
        self._reinvite_pending = False
        self._refer_waiters: list[asyncio.Future[int]] = []

    @property
    def key(self) -> tuple[str, str, str]:
        return self.call_id, self.local.tag, self.remote.tag

    # --- building and sending requests ------------------------------------------------------
    def make_request(self, method: str, body: bytes = b"", content_type: str = "") -> SipRequest:
        headers = Headers()
        headers.add("Via", str(self.ua.via(self.peer.transport, new_branch())))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self.local))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.call_id)
        if method != "ACK":
            self.local_seq += 1
        headers.add("CSeq", f"{self.local_seq} {method}")
        for route in self.route_set:
            headers.add("Route", route)
        if method in ("INVITE", "REFER", "NOTIFY"):
            headers.add("Contact", str(self.ua.contact(self.peer.transport, secure=self.secure)))
        headers.add("User-Agent", self.ua.config.user_agent)
        if content_type:
            headers.add("Content-Type", content_type)
        return SipRequest(headers=headers, body=body, method=method, uri=self.remote_target)

    async def send(self, req: SipRequest, timeout_s: float | None = None) -> SipResponse:
        """Send an in-dialog request and return its final response (408 on timeout); a 401/407
        is answered with the dialog's credentials."""
        resp = await self.ua.transact(req, self.peer, timeout_s)
        for retried in (False, True):
            again = self._authorized(req, resp, retried)
            if again is None:
                break
            req, resp = again, await self.ua.transact(again, self.peer, timeout_s)
        return resp

    def _authorized(self, req: SipRequest, resp: SipResponse, retried: bool) -> SipRequest | None:
        """``req`` again (new CSeq and branch) with an answer to ``resp``'s challenge, or None when
        it is no challenge, we have no credentials, or they were refused already (not stale)."""
        if resp.status not in (401, 407) or self.credentials is None:
            return None
        if self.ended.is_set() and req.method != "BYE":
            return None  # our BYE ends the dialog before it is sent; nothing else goes after it
        challenge = resp.headers.get("WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate") or ""
        if retried and "stale=true" not in challenge.replace(" ", "").lower():
            return None
        try:
            value = authorization_header(challenge, req.method, str(req.uri), self.credentials)
        except ParseError:
            log.info("sip challenge unusable", extra={"call_id": self.call_id, "method": req.method})
            return None
        again = self.make_request(req.method, req.body, req.content_type)
        for name, value_ in req.headers:
            if name not in _REBUILT:
                again.headers.add(name, value_)
        again.headers.add("Authorization" if resp.status == 401 else "Proxy-Authorization", value)
        return again

    # --- our actions ----------------------------------------------------------------------
    async def bye(self) -> None:
        """Hang up. The dialog ends even if the peer does not answer the BYE."""
        if self.ended.is_set():
            return
        self._end("local_bye")
        try:
            resp = await self.send(self.make_request("BYE"))
            log.info("sip bye answered", extra={"call_id": self.call_id, "status": resp.status})
        except TransportError:
            log.info("sip bye not sent: transport error", extra={"call_id": self.call_id})

    async def reinvite(self, local_sdp: SessionDescription) -> SipResponse:
        """Send a re-INVITE with a new offer (hold: sendonly/inactive) and return the final response."""
        offer = copy.deepcopy(local_sdp)
        offer.version = (self.local_sdp.version + 1) if self.local_sdp else offer.version
        self._reinvite_pending = True
        try:
            req = self.make_request("INVITE", offer.encode(), "application/sdp")
            resp = await self.ua.invite_in_dialog(self, req)
            for retried in (False, True):
                again = self._authorized(req, resp, retried)
                if again is None:
                    break
                req, resp = again, await self.ua.invite_in_dialog(self, again)
        finally:
            self._reinvite_pending = False
        if 200 <= resp.status < 300:
            self.local_sdp = offer
            if resp.body:
                try:
                    self.remote_sdp = parse_sdp(resp.body)
                except SdpError:
                    log.info("sip re-invite answer unparseable", extra={"call_id": self.call_id})
        return resp

    async def hold(self, held: bool = True) -> SipResponse:
        if self.local_sdp is None:
            raise SdpError("no local session description to hold")
        sdp = copy.deepcopy(self.local_sdp)
        for m in sdp.media:
            if m.port:
                m.direction = "sendonly" if held else "sendrecv"
        return await self.reinvite(sdp)

    # --- 2xx reliability (UAS core, RFC 3261 section 13.3.1.4) ------------------------------
    def start_ok_retransmit(self, resp: SipResponse, txn: ServerTransaction) -> None:
        self._ok = (resp, txn)
        if txn.reliable:
            self._schedule_ok(64 * self.ua.timers.t1, give_up=True)
        else:
            self._schedule_ok(self.ua.timers.t1)

    def _schedule_ok(self, interval: float, give_up: bool = False, elapsed: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        self._ok_timer = loop.call_later(interval, self._ok_tick, interval, elapsed + interval, give_up)

    def _ok_tick(self, interval: float, elapsed: float, give_up: bool) -> None:
        if self._ok is None or self.ended.is_set():
            return
        if give_up or elapsed >= 64 * self.ua.timers.t1:
            log.info("sip ack never arrived: ending call", extra={"call_id": self.call_id})
            self._ok = None
            self.ua.spawn(self.bye())
            return
        resp, txn = self._ok
        self.ua.send_nowait(resp, txn.reply_to)
        self._schedule_ok(min(interval * 2, self.ua.timers.t2), elapsed=elapsed)

    def on_ack(self, req: SipRequest) -> None:
        if self._ok is None or req.cseq.seq != self._ok[1].request.cseq.seq:
            return
        self._ok = None
        if self._ok_timer is not None:
            self._ok_timer.cancel()
        if req.body and req.content_type == "application/sdp":
            try:
                self.remote_sdp = parse_sdp(req.body)
            except SdpError:
                log.info("sip ack sdp unparseable", extra={"call_id": self.call_id})
        self.confirmed.set()

    def set_ack(self, ack: SipRequest) -> None:
        self._ack = ack

    def resend_ack(self) -> None:
        if self._ack is not None:
            self.ua.send_nowait(self._ack, self.peer)

    # --- peer's requests ------------------------------------------------------------------
    def handle(self, req: SipRequest, txn: ServerTransaction) -> None:
        seq = req.cseq.seq
        if req.method != "CANCEL" and seq <= self.remote_seq and self.remote_seq:
            txn.respond(make_response(req, 500, "Out of order"))
            return
        self.remote_seq = seq
        if self._challenge(req, txn):
            return
        handler = {
            "BYE": self._on_bye,
            "INVITE": self._on_reinvite,
            "REFER": self._on_refer,
            "NOTIFY": self._on_notify,
            "OPTIONS": self._on_options,
            "INFO": self._on_info,
        }.get(req.method)
        if handler is None:
            self.ua.reject_method(req, txn)
            return
        handler(req, txn)

    def _challenge(self, req: SipRequest, txn: ServerTransaction) -> bool:
        """With ``challenge_in_dialog``, the peer's BYE, REFER and re-INVITE need digest
        credentials too: answer 401 (and True) unless they carry valid ones."""
        auth = self.ua.config.auth
        if auth is None or not self.ua.config.challenge_in_dialog or req.method not in _CHALLENGED:
            return False
        header = req.headers.get("Authorization")
        result = auth.verify(req.method, header) if header else None
        if result is not None and result.ok:
            return False
        resp = make_response(req, 401)
        resp.headers.add("WWW-Authenticate", auth.challenge(stale=bool(result and result.stale)))
        txn.respond(resp)
        return True

    def _on_bye(self, req: SipRequest, txn: ServerTransaction) -> None:
        txn.respond(make_response(req, 200))
        if not self.ended.is_set():
            self._end("remote_bye")
            self._callback(self.handlers.on_bye, self)

    def _on_options(self, req: SipRequest, txn: ServerTransaction) -> None:
        txn.respond(self.ua.options_response(req))

    def _on_info(self, req: SipRequest, txn: ServerTransaction) -> None:
        if req.body and req.content_type not in ("application/dtmf-relay", "application/dtmf"):
            txn.respond(make_response(req, 415))
            return
        digit = _info_digit(req.content_type, req.body)
        txn.respond(make_response(req, 200))
        if digit:
            self._callback(self.handlers.on_dtmf, self, digit)

    def _on_reinvite(self, req: SipRequest, txn: ServerTransaction) -> None:
        if self._reinvite_pending or self._ok is not None:
            txn.respond(make_response(req, 491))
            return
        try:
            remote = parse_sdp(req.body) if req.body else None
            local = self._reanswer(remote) if remote is not None else None
            params = negotiated(remote, local) if remote is not None else None
        except SdpError:
            txn.respond(make_response(req, 400, "Bad SDP"))
            return
        except NoCommonCodec:
            txn.respond(make_response(req, 488))
            return
        held = params.on_hold if params is not None else self.held
        if local is not None:
            self.local_sdp = local
        if remote is not None:
            self.remote_sdp = remote
        resp = make_response(req, 200)
        resp.headers.add("Contact", str(self.ua.contact(self.peer.transport, secure=self.secure)))
        if self.local_sdp is not None:
            resp.headers.add("Content-Type", "application/sdp")
            resp.body = self.local_sdp.encode()
        txn.respond(resp)
        self.start_ok_retransmit(resp, txn)
        if params is not None:
            self._callback(self.handlers.on_media, self, params)
        if held != self.held:
            self.held = held
            self._callback(self.handlers.on_hold, self, held)

    def _reanswer(self, remote: SessionDescription) -> SessionDescription | None:
        """Our answer to a re-INVITE's offer: same address, port and session, next version, the
        codec picked afresh from the new offer (it may have changed). NoCommonCodec when none fits."""
        if self.local_sdp is None or self.local_sdp.audio is None:
            return None
        ours = self.local_sdp.audio
        # An SRTP call stays SRTP (same key while the suite stays); a plain one stays plain.
        secure = bool(ours.crypto)
        local = answer(
            remote,
            self.ua.config.codecs,
            address=ours.connection or self.local_sdp.address,
            port=ours.port,
            ptime=ours.ptime or 20,
            session_id=self.local_sdp.session_id,
            version=self.local_sdp.version + 1,
            srtp="optional" if secure else "off",
            reuse=ours.crypto,
        )
        if secure and (local.audio is None or not local.audio.crypto):
            raise NoCommonCodec("an SRTP call re-offered without keys")
        local.username = self.local_sdp.username
        return local

    # --- lifecycle ------------------------------------------------------------------------
    def _end(self, reason: str) -> None:
        self.end_reason = reason
        self.ended.set()
        if self._ok_timer is not None:
            self._ok_timer.cancel()
        self.ua.forget_dialog(self)

    def _callback(self, fn: Callable[..., Any] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            result = fn(*args)
        except Exception:  # noqa: BLE001 - a failing callback must not break the dialog
            log.exception("sip dialog callback failed", extra={"call_id": self.call_id})
            return
        if inspect.isawaitable(result):
            self.ua.spawn(result)


# Headers make_request writes afresh when a challenged request is sent again.
_REBUILT = frozenset(
    {"Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Route", "Contact", "User-Agent", "Content-Type"}
    | {"Content-Length", "Authorization", "Proxy-Authorization"}
)
_CHALLENGED = frozenset({"BYE", "REFER", "INVITE"})


_DTMF = frozenset("0123456789*#ABCDabcd")


def _info_digit(content_type: str, body: bytes) -> str:
    """The digit in an INFO body: ``Signal=5`` lines (dtmf-relay) or a bare digit (application/dtmf)."""
    text = body.decode("utf-8", "replace").strip()
    if content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                text = value.strip()
                break
        else:
            return ""
    return text.upper() if len(text) == 1 and text in _DTMF else ""
