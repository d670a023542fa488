"""Outbound registration of a trunk (RFC 3261 section 10; keep-alives after RFC 5626 section 4.4).

One :class:`Registration` per trunk with ``register``: REGISTER, answering a digest challenge;
a refresh before the granted expiry; a new REGISTER at once when the flow is lost (the TCP/TLS
connection closed, a keep-alive went unanswered) or the registrar sees us from another address
(a NAT rebinding, told by ``received``/``rport`` in the response's Via: the Contact then carries
that address and the old one is removed); after a failure, REGISTER again with back-off. Keep-alives
hold NAT bindings open: a CRLF pair on TCP/TLS, OPTIONS to the registrar on UDP.

While registered, the registrar's address is admitted as the trunk's source
(:meth:`TrunkTable.set_flow`), so what it routes to our Contact is taken as a call on the trunk.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phoneagent.edge.sip.auth import Credentials, authorization_header
from phoneagent.edge.sip.calls import out_of_dialog_request
from phoneagent.edge.sip.headers import Headers, NameAddr, ParseError, SipURI, split_outside_quotes
from phoneagent.edge.sip.message import SipRequest, SipResponse
from phoneagent.edge.sip.sockets import Addr, Peer, TransportError
from phoneagent.edge.sip.transaction import new_branch
from phoneagent.edge.sip.trunks import Trunk, TrunkTable
from phoneagent.runtime.metrics import SIP_REGISTERED, SIP_REGISTRATION_FAILURES
from phoneagent.runtime.retry import RetryPolicy

if TYPE_CHECKING:
    from phoneagent.edge.sip.ua import UserAgent

log = logging.getLogger(__name__)

# After the n-th failure in a row, wait n times 2 s (at most a minute) before trying again.
REGISTER_BACKOFF = RetryPolicy(retries=0, backoff_s=2.0, max_backoff_s=60.0)
_MAX_REFRESH_MARGIN_S = 30.0  # refresh this long before expiry (half the time for short grants)
_CRLF_PING = b"\r\n\r\n"


class RegState(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    STOPPED = "stopped"


class RegistrationFailed(Exception):
    def __init__(self, reason: str, status: int = 0, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after = reason, status, retry_after


@dataclass
class _Binding:
    contact: NameAddr  # the Contact registered (with a NAT-learned address, once seen)
    expires_at: float = 0.0


def _retry_after(resp: SipResponse) -> float:
    text = (resp.headers.get("Retry-After") or "").split(";")[0].strip()
    return float(min(int(text), 3600)) if text.isdigit() else 0.0


def refresh_after(granted: float) -> float:
    """Seconds after a successful REGISTER to refresh it: 30 s before expiry, or half-way."""
    return max(granted - min(granted / 2, _MAX_REFRESH_MARGIN_S), 0.5)


class Registration:
    """Keeps one trunk registered until :meth:`stop` (which removes the binding)."""

    def __init__(
        self,
        ua: UserAgent,
        trunk: Trunk,
        password: str,
        *,
        table: TrunkTable | None = None,
        backoff: RetryPolicy = REGISTER_BACKOFF,
        timeout_s: float = 32.0,
    ) -> None:
        if trunk.register is None:
            raise ValueError(f"trunk {trunk.name} does not register")
        self.ua, self.trunk, self.config = ua, trunk, trunk.register
        self.credentials = (
            Credentials(self.config.auth_user or self.config.user, password) if password else None
        )
        self.table = table
        self.backoff = backoff
        self.timeout_s = timeout_s
        self.state = RegState.REGISTERING
        self.failures = 0  # in a row
        self.registrations = 0  # successful REGISTERs (refreshes included)
        self.last_status = 0
        self._registrar: SipURI = self.config.uri
        self._aor = self.config.aor
        self._call_id = ua.new_call_id()
        self._from_tag = ua.new_tag()
        self._seq = 0
        self._peer: Peer | None = None
        self._binding: _Binding | None = None
        self._stale: NameAddr | None = None  # a Contact to remove (the address before a NAT rebinding)
        # set when the TCP/TLS connection to the registrar closes (cleared by each REGISTER)
        self._flow_lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._gauge = SIP_REGISTERED.labels(trunk=trunk.name)
        self._gauge.set(0)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for transport in self.ua.transports.values():
            if hasattr(transport, "closed_listeners"):
                transport.closed_listeners.append(self._connection_closed)
        self._task = asyncio.create_task(self._run(), name=f"register-{self.trunk.name}")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Stop refreshing and remove the binding (REGISTER with expiry 0, best effort)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            _, late = await asyncio.wait([self._task], timeout=timeout_s)
            if late:
                log.warning("sip registration did not stop in time", extra={"trunk": self.trunk.name})
            self._task = None
        for transport in self.ua.transports.values():
            listeners = getattr(transport, "closed_listeners", [])
            if self._connection_closed in listeners:
                listeners.remove(self._connection_closed)
        was_registered = self.state is RegState.REGISTERED
        self._set_state(RegState.STOPPED)
        if was_registered and self._peer is not None and self._binding is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    resp = await self._exchange(self._peer, 0)
                if not 200 <= resp.status < 300:
                    log.info(
                        "sip unregister refused", extra={"trunk": self.trunk.name, "status": resp.status}
                    )
            except (RegistrationFailed, ParseError, TimeoutError):
                log.info("sip unregister unanswered", extra={"trunk": self.trunk.name})
        if self.table is not None:
            self.table.set_flow(self.trunk.name, ())

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state.value,
            "transport": self._peer.transport if self._peer else "",
            "failures": self.failures,
            "last_status": self.last_status,
        }
        if self.state is RegState.REGISTERED and self._binding is not None:
            loop = asyncio.get_running_loop()
            out["expires_in_s"] = max(0, round(self._binding.expires_at - loop.time()))
            uri = self._binding.contact.uri
            out["contact"] = f"{uri.host}:{uri.port}"
        return out

    # --- the loop -------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            try:
                granted = await self._register()
            except RegistrationFailed as exc:
                self._failed(exc.reason, exc.status)
                await asyncio.sleep(max(self.backoff.delay(self.failures), exc.retry_after))
                continue
            except (ParseError, ValueError):
                self._failed("rejected", 0)
                log.warning("sip registration answer unusable", extra={"trunk": self.trunk.name})
                await asyncio.sleep(self.backoff.delay(self.failures))
                continue
            except Exception:  # noqa: BLE001 - the registration must outlive one bad exchange
                self._failed("error", 0)
                log.exception("sip registration failed unexpectedly", extra={"trunk": self.trunk.name})
                await asyncio.sleep(self.backoff.delay(self.failures))
                continue
            reason = await self._hold(granted)
            if reason:
                SIP_REGISTRATION_FAILURES.labels(trunk=self.trunk.name, reason=reason).inc()
                log.info(
                    "sip registration flow lost: registering again",
                    extra={"trunk": self.trunk.name, "reason": reason},
                )
                self._set_state(RegState.REGISTERING)

    def _failed(self, reason: str, status: int) -> None:
        self.failures += 1
        self.last_status = status
        SIP_REGISTRATION_FAILURES.labels(trunk=self.trunk.name, reason=reason).inc()
        if self.table is not None:
            self.table.set_flow(self.trunk.name, ())
        self._set_state(RegState.FAILED)
        log.warning(
            "sip registration failed",
            extra={"trunk": self.trunk.name, "reason": reason, "status": status, "failures": self.failures},
        )

    def _set_state(self, state: RegState) -> None:
        self.state = state
        self._gauge.set(1 if state is RegState.REGISTERED else 0)

    async def _register(self) -> float:
        """One registration (with its challenge, an Interval Too Brief, and a NAT rebinding): the
        seconds granted."""
        try:
            peer = await self.ua.resolve(self._registrar)
        except (TransportError, OSError) as exc:
            raise RegistrationFailed("transport") from exc
        if self._peer is not None and peer != self._peer:
            self._binding = None  # another registrar address or transport: start afresh
        self._peer = peer
        expires = self.config.expires
        rebound = False
        while True:
            resp = await self._exchange(peer, expires)
            if 200 <= resp.status < 300:
                granted = self._granted(resp, expires)
                if not rebound and self._rebind(resp, peer):
                    rebound = True  # register the address the registrar saw, once
                    continue
                return self._registered(granted, peer)
            minimum = (resp.headers.get("Min-Expires") or "").strip()
            if resp.status == 423 and minimum.isdigit() and expires < int(minimum) <= 86400:
                expires = int(minimum)
                continue
            if resp.status in (401, 407, 403):
                raise RegistrationFailed("auth_failed", resp.status)
            reason = "timeout" if resp.status == 408 else "rejected"
            raise RegistrationFailed(reason, resp.status, _retry_after(resp))

    async def _exchange(self, peer: Peer, expires: int) -> SipResponse:
        """One REGISTER asking for ``expires`` (0: remove the binding), a digest challenge answered
        (twice at most: a stale nonce may be challenged again): the last response."""
        auth: tuple[str, str] | None = None
        for _ in range(3):
            req = self._request(peer, expires, auth)
            resp = await self._send(req, peer)
            self.last_status = resp.status
            if resp.status not in (401, 407) or self.credentials is None:
                break
            auth = self._answer(resp, req)
        return resp

    def _request(self, peer: Peer, expires: int, auth: tuple[str, str] | None) -> SipRequest:
        if self._binding is None:
            self._binding = _Binding(
                self.ua.contact(
                    peer.transport, user=self.config.user, secure=self._registrar.scheme == "sips"
                )
            )
        self._seq += 1
        ruri = SipURI(self._registrar.scheme, self._aor.host, port=self._registrar.port)
        headers = Headers()
        headers.add("Via", str(self.ua.via(peer.transport, new_branch())))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(NameAddr(self._aor, params={"tag": self._from_tag})))
        headers.add("To", str(NameAddr(self._aor)))
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._seq} REGISTER")
        headers.add("Contact", str(self._binding.contact))
        if self._stale is not None:
            headers.add("Contact", str(NameAddr(self._stale.uri, params={"expires": "0"})))
        headers.add("Expires", str(expires))
        headers.add("Allow", ", ".join(self.ua.allowed_methods))
        headers.add("User-Agent", self.ua.config.user_agent)
        if auth is not None:
            headers.add(*auth)
        return SipRequest(headers=headers, method="REGISTER", uri=ruri)

    async def _send(self, req: SipRequest, peer: Peer) -> SipResponse:
        """The final response; over TCP/TLS a connection that closes first ends the wait (it would
        otherwise last until the transaction times out)."""
        self._flow_lost.clear()
        sending = asyncio.ensure_future(self.ua.transact(req, peer, self.timeout_s))
        lost = asyncio.ensure_future(self._flow_lost.wait())
        try:
            await asyncio.wait({sending, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not sending.done():
                sending.cancel()
        if not sending.done() or sending.cancelled():
            raise RegistrationFailed("flow_lost")
        try:
            return sending.result()
        except (TransportError, OSError) as exc:
            raise RegistrationFailed("transport") from exc

    def _answer(self, resp: SipResponse, req: SipRequest) -> tuple[str, str]:
        assert self.credentials is not None
        name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        reply = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        try:
            value = authorization_header(
                resp.headers.get(name) or "", "REGISTER", str(req.uri), self.credentials
            )
        except ParseError as exc:
            raise RegistrationFailed("auth_failed", resp.status) from exc
        return reply, value

    def _granted(self, resp: SipResponse, asked: int) -> float:
        """The expiry granted to our Contact: its ``expires`` parameter, else the Expires header,
        else what we asked for."""
        assert self._binding is not None
        ours = self._binding.contact.uri
        for value in resp.headers.get_all("Contact"):
            for item in split_outside_quotes(value, ","):
                if not item.strip():
                    continue
                contact = NameAddr.parse(item)
                uri = contact.uri
                if (uri.user, uri.host, uri.port) == (ours.user, ours.host, ours.port):
                    text = contact.params.get("expires", "")
                    if text.isdigit():
                        return float(text)
        header = (resp.headers.get("Expires") or "").strip()
        return float(header) if header.isdigit() else float(asked)

    def _seen_address(self, resp: SipResponse, peer: Peer) -> Addr | None:
        """The address the registrar saw our request come from, when it differs from our Contact
        (UDP: host or port; TCP/TLS: the host, since the port of a connection we opened is not one
        we listen on unless a NAT stands between)."""
        assert self._binding is not None
        via = resp.top_via
        received, rport = via.params.get("received", ""), via.params.get("rport", "")
        uri = self._binding.contact.uri
        host = received or uri.host
        port = int(rport) if rport.isdigit() else (uri.port or 5060)
        if peer.transport == "UDP":
            return (host, port) if (host, port) != (uri.host, uri.port) else None
        return (host, port) if received and received != uri.host else None

    def _rebind(self, resp: SipResponse, peer: Peer) -> bool:
        seen = self._seen_address(resp, peer)
        if seen is None or self._binding is None:
            return False
        old = self._binding.contact
        uri = SipURI(old.uri.scheme, seen[0], old.uri.user, seen[1], dict(old.uri.params))
        self._stale = old
        self._binding = _Binding(NameAddr(uri))
        log.info(
            "sip registration: registrar sees another address, updating contact",
            extra={"trunk": self.trunk.name},
        )
        return True

    def _registered(self, granted: float, peer: Peer) -> float:
        assert self._binding is not None
        if granted <= 0:
            raise RegistrationFailed("rejected", 200)
        self._stale = None
        self._binding.expires_at = asyncio.get_running_loop().time() + granted
        self.failures = 0
        self.registrations += 1
        if self.table is not None:
            self.table.set_flow(self.trunk.name, (peer.addr[0],))
        if self.state is not RegState.REGISTERED:
            log.info("sip trunk registered", extra={"trunk": self.trunk.name, "expires_s": granted})
        self._set_state(RegState.REGISTERED)
        return granted

    # --- holding the registration ---------------------------------------------------------
    async def _hold(self, granted: float) -> str:
        """Wait until the refresh is due ('') or the flow is lost (the reason), sending keep-alives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + refresh_after(granted)
        while (remaining := deadline - loop.time()) > 0:
            interval = self.config.keepalive_s
            wait = min(remaining, interval) if interval else remaining
            try:
                async with asyncio.timeout(wait):  # (3.11's wait_for can swallow a cancellation)
                    await self._flow_lost.wait()
                return "flow_lost"
            except TimeoutError:
                pass
            if interval and deadline - loop.time() > 0:
                reason = await self._keepalive()
                if reason:
                    return reason
        return ""

    def _connection_closed(self, addr: Addr) -> None:
        if self._peer is not None and self._peer.addr == addr and self._peer.transport != "UDP":
            self._flow_lost.set()

    async def _keepalive(self) -> str:
        peer = self._peer
        assert peer is not None
        transport = self.ua.transports.get(peer.transport)
        if transport is None:
            return "flow_lost"
        if peer.transport != "UDP":
            if not transport.connected(peer.addr) or not transport.send_nowait(_CRLF_PING, peer.addr):
                return "flow_lost"
            return ""
        local = NameAddr(SipURI("sip", self._aor.host, self.config.user), params={"tag": self.ua.new_tag()})
        target = SipURI(self._registrar.scheme, self._aor.host, port=self._registrar.port)
        req = out_of_dialog_request(self.ua, "OPTIONS", target, peer, local, self.ua.new_call_id(), 1)
        try:
            resp = await self.ua.transact(req, peer, self.timeout_s)
        except (TransportError, OSError):
            return "keepalive"
        if resp.status == 408:
            return "keepalive"
        try:
            moved = self._seen_address(resp, peer) is not None
        except ParseError:
            moved = False
        return "nat_rebinding" if moved else ""
