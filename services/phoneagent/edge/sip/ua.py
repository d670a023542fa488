"""The SIP user agent the edge service drives: inbound calls through a callback, outbound calls by ``call()``.

Every handler catches and logs its own failures with fixed messages; a bad datagram, connection or
callback never stops the user agent. Caller and callee numbers are logged masked only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from phoneagent.edge.sip.auth import Credentials, DigestServer
from phoneagent.edge.sip.calls import (
    CallFailed,
    CallOutcome,
    IncomingCall,
    OutboundCall,
    out_of_dialog_request,
)
from phoneagent.edge.sip.dialog import Dialog, DialogHandlers
from phoneagent.edge.sip.headers import NameAddr, ParseError, SipURI, Via
from phoneagent.edge.sip.inbound import ALLOWED_METHODS, InboundRequests, IncomingCallback
from phoneagent.edge.sip.message import SipMessage, SipRequest, SipResponse, make_response
from phoneagent.edge.sip.sdp import SessionDescription
from phoneagent.edge.sip.sockets import (
    Peer,
    TcpLimits,
    TcpTransport,
    TlsConfig,
    TlsTransport,
    TransportError,
    UdpTransport,
)
from phoneagent.edge.sip.transaction import Timers, TransactionLayer
from phoneagent.edge.sip.trunks import SourceRateLimit, TrunkTable
from phoneagent.runtime.errors import InvalidArgument

log = logging.getLogger(__name__)

__all__ = [
    "UAConfig",
    "UserAgent",
    "CallFailed",
    "CallOutcome",
    "IncomingCall",
    "Dialog",
    "DialogHandlers",
    "Credentials",
]


@dataclass(frozen=True)
class UAConfig:
    host: str = "127.0.0.1"
    port: int = 0
    transports: tuple[str, ...] = ("udp",)
    tls: TlsConfig | None = None  # certificates, needed when transports include "tls"
    tls_port: int = 0  # TLS listens on its own port (5061 by convention); 0: any free port
    advertised_host: str | None = None  # address put in Via/Contact when bound to 0.0.0.0
    user: str = "agent"
    display_name: str = ""
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    timers: Timers = field(default_factory=Timers)
    max_calls: int = 100
    overload_status: int = 503  # 486 Busy Here or 503 Service Unavailable
    auth: DigestServer | None = None  # challenge inbound INVITEs when set (with trunks: as they ask)
    trunks: TrunkTable | None = None  # who may call in; None admits every source
    invite_limit: SourceRateLimit | None = None  # INVITEs per source; None: unlimited
    tcp: TcpLimits = field(default_factory=TcpLimits)
    max_transactions: int = 2048  # server transactions in flight; more get 503
    challenge_in_dialog: bool = False  # with auth: challenge the peer's BYE, REFER and re-INVITE too
    no_answer_timeout_s: float = 60.0
    user_agent: str = "phone-agent"

    def validate(self) -> None:
        if not self.transports or any(t not in ("udp", "tcp", "tls") for t in self.transports):
            raise InvalidArgument("SIP transports must be 'udp', 'tcp' and/or 'tls'")
        if "tls" in self.transports and (self.tls is None or not (self.tls.cert_file and self.tls.key_file)):
            raise InvalidArgument("SIP over TLS needs a certificate and key file")
        if not 0 <= self.tls_port < 65536:
            raise InvalidArgument("SIP TLS port must be below 65536")
        if self.overload_status not in (486, 503):
            raise InvalidArgument("SIP overload status must be 486 or 503")
        if self.max_transactions < 1:
            raise InvalidArgument("SIP max transactions must be at least 1")
        if self.max_calls < 0 or not 0 <= self.port < 65536:
            raise InvalidArgument("SIP max calls and port must be non-negative (port below 65536)")


class UserAgent(InboundRequests):
    def __init__(
        self, config: UAConfig | None = None, on_incoming_call: IncomingCallback | None = None
    ) -> None:
        self.config = config or UAConfig()
        self.config.validate()
        self.on_incoming_call = on_incoming_call
        self.timers = self.config.timers
        self.allowed_methods = ALLOWED_METHODS
        self._transports: dict[str, Any] = {}
        self.layer = TransactionLayer(
            self._transports, self, self.timers, max_server=self.config.max_transactions
        )
        self._dialogs: dict[tuple[str, str, str], Dialog] = {}
        self._pending: dict[tuple[str, str], IncomingCall] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._closing = False

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        port = self.config.port
        cfg = self.config
        for name in cfg.transports:
            transport: UdpTransport | TcpTransport
            if name == "udp":
                transport = UdpTransport(self.layer.receive, cfg.host, port)
            elif name == "tcp":
                transport = TcpTransport(self.layer.receive, cfg.host, port, limits=cfg.tcp)
            else:
                continue
            await transport.start()
            port = transport.local[1]  # the second transport shares the first one's port
            self._transports[transport.name] = transport
        if "tls" in cfg.transports and cfg.tls is not None:
            tls = TlsTransport(self.layer.receive, cfg.host, cfg.tls_port, tls=cfg.tls, limits=cfg.tcp)
            await tls.start()
            self._transports[tls.name] = tls
        log.info("sip user agent listening", extra={"port": port, "transports": list(self._transports)})

    async def close(self, timeout_s: float = 2.0) -> None:
        self._closing = True
        dialogs = list(self._dialogs.values())
        if dialogs:
            byes = [asyncio.ensure_future(d.bye()) for d in dialogs]
            _, late = await asyncio.wait(byes, timeout=timeout_s)
            for bye in late:
                bye.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        self.layer.close()
        for transport in self._transports.values():
            await transport.close()

    def spawn(self, aw: Awaitable[Any]) -> None:
        """Run ``aw`` as a task owned (and cancelled at close) by the user agent."""
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error(
                "sip background task failed", exc_info=(type(exc), exc, exc.__traceback__) if exc else None
            )

    # --- addresses ------------------------------------------------------------------------
    def local_address(self, transport: str = "UDP") -> tuple[str, int]:
        t = self._transports.get(transport.upper()) or next(iter(self._transports.values()))
        host, port = t.local
        return self.config.advertised_host or host, port

    def local_uri(self) -> SipURI:
        host, port = self.local_address()
        return SipURI("sip", host, self.config.user, port)

    @property
    def transports(self) -> dict[str, Any]:
        """The running transports by name (UDP, TCP, TLS)."""
        return self._transports

    def contact(self, transport: str, user: str | None = None, *, secure: bool = False) -> NameAddr:
        """Our Contact for ``transport``; ``secure`` (a ``sips:`` request or dialog, over TLS):
        a ``sips:`` URI, as RFC 3261 section 8.1.1.8 asks."""
        host, port = self.local_address(transport)
        name = transport.upper()
        user = self.config.user if user is None else user
        if secure and name == "TLS":
            return NameAddr(SipURI("sips", host, user, port))
        params = {"transport": name.lower()} if name in ("TCP", "TLS") else {}
        return NameAddr(SipURI("sip", host, user, port, params))

    def via(self, transport: str, branch: str) -> Via:
        host, port = self.local_address(transport)
        return Via(transport.upper(), host, port, {"branch": branch, "rport": ""})

    @staticmethod
    def new_call_id() -> str:
        return secrets.token_hex(12)

    @staticmethod
    def new_tag() -> str:
        return secrets.token_hex(6)

    async def resolve(self, uri: SipURI, transport: str | None = None) -> Peer:
        """Where to send a request for ``uri``: TLS for a ``sips:`` URI, else its transport parameter,
        else ``transport``, else UDP when we run it (RFC 3263 default), else our only transport.
        Hostnames get an A lookup; a TLS peer's certificate must then carry the name."""
        if uri.scheme == "sips":
            name = "TLS"
        else:
            name = (
                uri.params.get("transport")
                or transport
                or ("udp" if "UDP" in self._transports else next(iter(self._transports)))
            ).upper()
        if name not in self._transports:
            raise TransportError(f"no {name} transport for this target")
        port = uri.port or (5061 if name == "TLS" else 5060)
        try:
            ipaddress.ip_address(uri.host)
            return Peer(name, (uri.host, port))
        except ValueError:
            pass
        infos = await asyncio.get_running_loop().getaddrinfo(uri.host, port, family=socket.AF_INET)
        if not infos:
            raise TransportError("host did not resolve")
        peer = Peer(name, (str(infos[0][4][0]), port))
        if name == "TLS":
            self._transports[name].expect_name(peer.addr, uri.host)
        return peer

    async def peer_for(self, route_set: list[str], target: SipURI) -> Peer:
        if route_set:
            return await self.resolve(NameAddr.parse(route_set[0]).uri)
        return await self.resolve(target)

    def send_nowait(self, msg: SipMessage, peer: Peer) -> None:
        if not self.layer.transport(peer).send_nowait(msg.encode(), peer.addr):
            log.info("sip send failed: no connection", extra={"transport": peer.transport})

    # --- outbound -------------------------------------------------------------------------
    async def start_call(
        self,
        target_uri: SipURI | str,
        local_sdp: SessionDescription,
        auth_credentials: Credentials | None = None,
        *,
        timeout_s: float | None = None,
        handlers: DialogHandlers | None = None,
        transport: str | None = None,
        on_progress: Callable[[int, SessionDescription | None], Any] | None = None,
    ) -> OutboundCall:
        """Prepare an outbound call; ``await oc.run()`` places it, ``oc.cancel()`` abandons it."""
        target = SipURI.parse(target_uri) if isinstance(target_uri, str) else target_uri
        peer = await self.resolve(target, transport)
        return OutboundCall(
            self,
            target,
            local_sdp,
            auth_credentials,
            peer,
            timeout_s=timeout_s or self.config.no_answer_timeout_s,
            handlers=handlers,
            on_progress=on_progress,
        )

    async def call(
        self,
        target_uri: SipURI | str,
        local_sdp: SessionDescription,
        auth_credentials: Credentials | None = None,
        **kwargs: Any,
    ) -> Dialog:
        """Place a call and return the confirmed dialog, or raise CallFailed (busy, no answer, failed,
        cancelled). Cancelling the awaiting task sends CANCEL."""
        try:
            oc = await self.start_call(target_uri, local_sdp, auth_credentials, **kwargs)
        except (TransportError, OSError) as exc:
            raise CallFailed(CallOutcome.FAILED, 503, "target unreachable") from exc
        try:
            return await oc.run()
        except TransportError as exc:
            raise CallFailed(CallOutcome.FAILED, 503, "transport error") from exc
        except asyncio.CancelledError:
            oc.cancel()
            self.spawn(oc.send_cancel())
            raise

    async def transact(self, req: SipRequest, peer: Peer, timeout_s: float | None = None) -> SipResponse:
        """A non-INVITE request: its final response, or a local 408 on timeout."""
        fut: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

        def on_response(resp: SipResponse) -> None:
            if resp.status >= 200 and not fut.done():
                fut.set_result(resp)

        def on_timeout() -> None:
            if not fut.done():
                fut.set_result(make_response(req, 408))

        await self.layer.request(req, peer, on_response, on_timeout)
        try:
            return await asyncio.wait_for(fut, timeout_s) if timeout_s else await fut
        except TimeoutError:
            return make_response(req, 408)

    async def invite_in_dialog(self, dialog: Dialog, req: SipRequest) -> SipResponse:
        """A re-INVITE: wait for its final response and ACK a 2xx."""
        fut: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        ack = dialog.make_request("ACK")
        ack.headers.set("CSeq", f"{req.cseq.seq} ACK")

        def on_response(resp: SipResponse) -> None:
            if resp.status >= 200 and not fut.done():
                fut.set_result(resp)
            elif 200 <= resp.status < 300:
                self.send_nowait(ack, dialog.peer)

        def on_timeout() -> None:
            if not fut.done():
                fut.set_result(make_response(req, 408))

        await self.layer.request(req, dialog.peer, on_response, on_timeout)
        resp = await fut
        if 200 <= resp.status < 300:
            self.send_nowait(ack, dialog.peer)
        return resp

    async def options(self, target_uri: SipURI | str, transport: str | None = None) -> SipResponse:
        target = SipURI.parse(target_uri) if isinstance(target_uri, str) else target_uri
        peer = await self.resolve(target, transport)
        local = NameAddr(self.local_uri(), self.config.display_name, {"tag": self.new_tag()})
        req = out_of_dialog_request(self, "OPTIONS", target, peer, local, self.new_call_id(), 1)
        req.headers.add("Accept", "application/sdp")
        return await self.transact(req, peer)

    # --- dialogs and pending calls --------------------------------------------------------
    @property
    def active_calls(self) -> int:
        return len(self._dialogs) + len(self._pending)

    def register_dialog(self, dialog: Dialog) -> None:
        self._dialogs[dialog.key] = dialog

    def forget_dialog(self, dialog: Dialog) -> None:
        if self._dialogs.get(dialog.key) is dialog:
            del self._dialogs[dialog.key]

    def call_settled(self, call: IncomingCall) -> None:
        self._pending.pop((call.call_id, call.caller.tag), None)

    async def dialog_for_incoming(
        self, call: IncomingCall, local_sdp: SessionDescription, handlers: DialogHandlers | None
    ) -> Dialog:
        req = call.request
        contact = req.contact
        target = contact.uri if contact else req.from_.uri
        routes = req.headers.get_all("Record-Route")
        try:
            peer = await self.peer_for(routes, target)
        except (TransportError, OSError, ParseError):
            peer = call.txn.reply_to
        local = NameAddr(call.callee.uri, call.callee.display, dict(call.callee.params, tag=call.local_tag))
        dialog = Dialog(
            self,
            call_id=call.call_id,
            local=local,
            remote=call.caller,
            remote_target=target,
            route_set=routes,
            local_seq=0,
            remote_seq=req.cseq.seq,
            peer=peer,
            local_sdp=local_sdp,
            remote_sdp=call.remote_sdp,
            outbound=False,
            handlers=handlers,
        )
        self.register_dialog(dialog)
        return dialog
