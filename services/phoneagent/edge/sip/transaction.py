"""RFC 3261 section 17 transactions (with the RFC 6026 Accepted state for INVITE 2xx).

Timers A/B/D/E/F/K (client) and G/H/I/J/L/M are derived from T1, T2 and T4, which are configurable so
tests can shrink them. Retransmissions happen only over unreliable transports; the ACK for a non-2xx
final response is generated here, the ACK for a 2xx belongs to the dialog layer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from phoneagent.edge.sip.headers import Headers, ParseError
from phoneagent.edge.sip.message import SipMessage, SipRequest, SipResponse, make_response
from phoneagent.edge.sip.sockets import Addr, Peer, TransportError
from phoneagent.runtime.metrics import SIP_REFUSED

log = logging.getLogger(__name__)
MAGIC = "z9hG4bK"


def new_branch() -> str:
    return MAGIC + secrets.token_hex(8)


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class SipTransport(Protocol):
    name: str
    reliable: bool

    def send_nowait(self, data: bytes, addr: Addr) -> bool: ...

    async def send(self, data: bytes, addr: Addr) -> None: ...


class TransactionUser(Protocol):
    def on_request(self, request: SipRequest, txn: ServerTransaction | None, peer: Peer) -> None: ...

    def on_stray_response(self, response: SipResponse, peer: Peer) -> None: ...


def response_peer(request: SipRequest, peer: Peer) -> Peer:
    """Where responses go: the connection for TCP, received/rport or sent-by for UDP (RFC 3581)."""
    if peer.transport != "UDP":
        return peer
    via = request.top_via
    host = via.params.get("received") or via.host
    rport = via.params.get("rport", "")
    if rport.isdigit():
        return Peer("UDP", (host, int(rport)))
    return Peer("UDP", (host, via.port or 5060))


class _Transaction:
    def __init__(self, layer: TransactionLayer, request: SipRequest, peer: Peer) -> None:
        self.layer = layer
        self.request = request
        self.peer = peer
        self.reliable = layer.transport(peer).reliable
        self.state = State.TRYING
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.branch = request.top_via.branch

    @property
    def t(self) -> Timers:
        return self.layer.timers

    def _timer(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self._cancel(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self._fire, name, fn)

    def _fire(self, name: str, fn: Callable[[], None]) -> None:
        self._timers.pop(name, None)
        if self.state is State.TERMINATED:
            return
        try:
            fn()
        except Exception:  # noqa: BLE001 - a timer callback must not break the loop
            log.exception("sip transaction timer failed", extra={"timer": name})

    def _cancel(self, *names: str) -> None:
        for name in names:
            handle = self._timers.pop(name, None)
            if handle is not None:
                handle.cancel()

    def _send(self, msg: SipMessage, peer: Peer | None = None) -> None:
        target = peer or self.peer
        if not self.layer.transport(target).send_nowait(msg.encode(), target.addr):
            log.info("sip send failed: no connection", extra={"transport": target.transport})

    def terminate(self) -> None:
        self.state = State.TERMINATED
        self._cancel(*list(self._timers))
        self.layer._forget(self)


class ClientTransaction(_Transaction):
    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        peer: Peer,
        on_response: Callable[[SipResponse], None],
        on_timeout: Callable[[], None],
    ) -> None:
        super().__init__(layer, request, peer)
        self.invite = request.method == "INVITE"
        self.state = State.CALLING if self.invite else State.TRYING
        self._on_response = on_response
        self._on_timeout = on_timeout
        self.key = (self.branch, request.method)

    async def start(self) -> None:
        try:
            await self.layer.transport(self.peer).send(self.request.encode(), self.peer.addr)
        except TransportError:
            self.terminate()
            raise
        if not self.reliable:
            self._retransmit(self.t.t1)
        self._timer("B/F", 64 * self.t.t1, self._timeout)

    def _retransmit(self, interval: float) -> None:
        def again() -> None:
            if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                self._send(self.request)
                if self.invite:
                    self._retransmit(interval * 2)
                else:
                    self._retransmit(min(interval * 2, self.t.t2))

        next_interval = self.t.t2 if (self.state is State.PROCEEDING and not self.invite) else interval
        self._timer("A/E", next_interval, again)

    def _timeout(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self.terminate()
            self._on_timeout()

    def receive(self, resp: SipResponse) -> None:
        if self.invite:
            self._receive_invite(resp)
        else:
            self._receive_non_invite(resp)

    def _receive_invite(self, resp: SipResponse) -> None:
        if self.state is State.COMPLETED:
            if resp.status >= 300:
                self._send(self._ack_for(resp))
            return
        if self.state is State.ACCEPTED:
            if 200 <= resp.status < 300:
                self._on_response(resp)
            return
        if resp.status < 200:
            self.state = State.PROCEEDING
            self._cancel("A/E", "B/F")
        elif resp.status < 300:
            self.state = State.ACCEPTED
            self._cancel("A/E", "B/F")
            self._timer("M", 64 * self.t.t1, self.terminate)
        else:
            self.state = State.COMPLETED
            self._cancel("A/E", "B/F")
            self._send(self._ack_for(resp))
            self._timer("D", 0 if self.reliable else 64 * self.t.t1, self.terminate)
        self._on_response(resp)

    def _receive_non_invite(self, resp: SipResponse) -> None:
        if self.state is State.COMPLETED:
            return
        if resp.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self._cancel("A/E", "B/F")
            self._timer("K", 0 if self.reliable else self.t.t4, self.terminate)
        self._on_response(resp)

    def _ack_for(self, resp: SipResponse) -> SipRequest:
        """ACK for a non-2xx final response (RFC 3261 section 17.1.1.3)."""
        req = self.request
        headers = Headers()
        headers.add("Via", req.headers.get("Via") or "")
        for name in ("Route",):
            for value in req.headers.get_all(name):
                headers.add(name, value)
        headers.add("Max-Forwards", "70")
        headers.add("From", req.headers.get("From") or "")
        headers.add("To", resp.headers.get("To") or "")
        headers.add("Call-ID", req.call_id)
        headers.add("CSeq", f"{req.cseq.seq} ACK")
        return SipRequest(headers=headers, method="ACK", uri=req.uri)


class ServerTransaction(_Transaction):
    def __init__(self, layer: TransactionLayer, request: SipRequest, peer: Peer) -> None:
        super().__init__(layer, request, peer)
        self.invite = request.method == "INVITE"
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.reply_to = response_peer(request, peer)
        self.last_response: SipResponse | None = None
        self.on_ack_timeout: Callable[[], None] | None = None
        via = request.top_via
        self.key: tuple[Any, ...] = (self.branch, via.sent_by, request.method)

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def respond(self, resp: SipResponse) -> None:
        if self.state in (State.COMPLETED, State.CONFIRMED, State.ACCEPTED, State.TERMINATED):
            log.info("sip response ignored: transaction already answered", extra={"status": resp.status})
            return
        self.last_response = resp
        self._send(resp, self.reply_to)
        if resp.status < 200:
            self.state = State.PROCEEDING
        elif self.invite and resp.status < 300:
            self.state = State.ACCEPTED
            self._timer("L", 64 * self.t.t1, self.terminate)
        elif self.invite:
            self.state = State.COMPLETED
            if not self.reliable:
                self._retransmit_final(self.t.t1)
            self._timer("H", 64 * self.t.t1, self._ack_timeout)
        else:
            self.state = State.COMPLETED
            self._timer("J", 0 if self.reliable else 64 * self.t.t1, self.terminate)

    def _retransmit_final(self, interval: float) -> None:
        def again() -> None:
            if self.state is State.COMPLETED and self.last_response is not None:
                self._send(self.last_response, self.reply_to)
                self._retransmit_final(min(interval * 2, self.t.t2))

        self._timer("G", interval, again)

    def _ack_timeout(self) -> None:
        self.terminate()
        if self.on_ack_timeout is not None:
            self.on_ack_timeout()

    def retransmission(self) -> None:
        """The same request arrived again: repeat the last response, if any."""
        if self.last_response is not None and self.state is not State.ACCEPTED:
            self._send(self.last_response, self.reply_to)

    def ack(self) -> None:
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._cancel("G", "H")
            self._timer("I", 0 if self.reliable else self.t.t4, self.terminate)


class TransactionLayer:
    def __init__(
        self,
        transports: dict[str, SipTransport],
        tu: TransactionUser,
        timers: Timers | None = None,
        *,
        max_server: int = 2048,
    ) -> None:
        self._transports = transports
        self.tu = tu
        self.timers = timers or Timers()
        self.max_server = max_server  # server transactions in flight; a new request beyond gets 503
        self._clients: dict[tuple[Any, ...], ClientTransaction] = {}
        self._servers: dict[tuple[Any, ...], ServerTransaction] = {}

    def transport(self, peer: Peer) -> SipTransport:
        try:
            return self._transports[peer.transport]
        except KeyError as exc:
            raise TransportError(f"no {peer.transport} transport") from exc

    def _forget(self, txn: _Transaction) -> None:
        table: dict[tuple[Any, ...], Any] = (
            self._clients if isinstance(txn, ClientTransaction) else self._servers
        )
        if table.get(txn.key) is txn:  # type: ignore[attr-defined]
            del table[txn.key]  # type: ignore[attr-defined]

    async def request(
        self,
        request: SipRequest,
        peer: Peer,
        on_response: Callable[[SipResponse], None],
        on_timeout: Callable[[], None],
    ) -> ClientTransaction:
        """Start a client transaction; raises TransportError if the first send fails."""
        txn = ClientTransaction(self, request, peer, on_response, on_timeout)
        self._clients[txn.key] = txn
        await txn.start()
        return txn

    async def send_stateless(self, msg: SipMessage, peer: Peer) -> None:
        await self.transport(peer).send(msg.encode(), peer.addr)

    def find_server(self, request: SipRequest, method: str) -> ServerTransaction | None:
        via = request.top_via
        return self._servers.get((via.branch, via.sent_by, method))

    def receive(self, msg: SipMessage, peer: Peer) -> None:
        """Transport handler: match to a transaction or pass to the transaction user."""
        try:
            if isinstance(msg, SipResponse):
                self._receive_response(msg, peer)
            elif isinstance(msg, SipRequest):
                self._receive_request(msg, peer)
        except ParseError as exc:
            log.info("sip message dropped: bad header", extra={"reason": exc.message})

    def _receive_response(self, resp: SipResponse, peer: Peer) -> None:
        txn = self._clients.get((resp.top_via.branch, resp.cseq.method))
        if txn is not None:
            txn.receive(resp)
        else:
            self.tu.on_stray_response(resp, peer)

    def _receive_request(self, req: SipRequest, peer: Peer) -> None:
        method = "INVITE" if req.method == "ACK" else req.method
        via = req.top_via
        key = (via.branch, via.sent_by, method)
        existing = self._servers.get(key) if via.branch.startswith(MAGIC) else None
        if req.method == "ACK":
            if existing is not None and existing.state is not State.ACCEPTED:
                existing.ack()
            else:
                self.tu.on_request(req, None, peer)
            return
        if existing is not None:
            existing.retransmission()
            return
        if len(self._servers) >= self.max_server:
            self._refuse_full(req, peer)
            return
        txn = ServerTransaction(self, req, peer)
        if via.branch.startswith(MAGIC):
            self._servers[key] = txn
        if txn.invite:
            txn.respond(make_response(req, 100))
        self.tu.on_request(req, txn, peer)

    def _refuse_full(self, req: SipRequest, peer: Peer) -> None:
        """No room for another server transaction: answer 503 statelessly (a retransmission
        gets the same answer, so the peer backs off for Retry-After)."""
        SIP_REFUSED.labels(reason="transactions_full").inc()
        resp = make_response(req, 503, to_tag=secrets.token_hex(6))
        resp.headers.add("Retry-After", "5")
        target = response_peer(req, peer)
        try:
            self.transport(target).send_nowait(resp.encode(), target.addr)
        except TransportError:
            pass
        log.warning("sip request refused: transactions full", extra={"method": req.method})

    def close(self) -> None:
        for txn in list(self._clients.values()) + list(self._servers.values()):
            txn.terminate()
