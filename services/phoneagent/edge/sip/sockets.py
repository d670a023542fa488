"""UDP, TCP and TLS transports for SIP (RFC 3261 section 18, RFC 5630). Bind 127.0.0.1 by default.

A transport parses what it receives and hands each message, with the peer it came from, to one
handler. A malformed request that still names Via/From/To/Call-ID/CSeq is answered with 400; any
other malformed input is dropped. Nothing a peer sends can stop the transport.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from phoneagent.edge.sip.headers import ParseError
from phoneagent.edge.sip.message import (
    SipMessage,
    SipRequest,
    StreamFramer,
    make_response,
    parse_message,
)
from phoneagent.runtime.errors import Unavailable
from phoneagent.runtime.metrics import SIP_REFUSED

log = logging.getLogger(__name__)

Addr = tuple[str, int]


@dataclass(frozen=True)
class Peer:
    transport: str  # "UDP", "TCP" or "TLS"
    addr: Addr


Handler = Callable[[SipMessage, Peer], None]


class TransportError(Unavailable):
    """A message could not be sent (connection refused, socket closed)."""


def _note_source(msg: SipMessage, peer: Peer) -> None:
    """Record where a request really came from in its top Via (RFC 3261 18.2.1, RFC 3581)."""
    if not isinstance(msg, SipRequest):
        return
    values = msg.headers.get_all("Via")
    via = msg.top_via
    if via.host != peer.addr[0]:
        via.params["received"] = peer.addr[0]
    if "rport" in via.params:
        via.params["rport"] = str(peer.addr[1])
        via.params.setdefault("received", peer.addr[0])
    msg.headers.remove("Via")
    msg.headers.add("Via", str(via))
    for value in values[1:]:
        msg.headers.add("Via", value)


def _deliver(
    raw: bytes, peer: Peer, handler: Handler, reply: Callable[[bytes], object], *, stream: bool
) -> None:
    try:
        msg = parse_message(raw, stream=stream)
        _note_source(msg, peer)
    except ParseError as exc:
        log.info(
            "sip message dropped: malformed",
            extra={"transport": peer.transport, "reason": exc.message, "answered": exc.can_reply},
        )
        if exc.can_reply and isinstance(exc.partial, SipRequest) and exc.partial.method != "ACK":
            try:
                reply(make_response(exc.partial, 400, "Bad Request").encode())
            except Exception:  # noqa: BLE001 - a failed 400 must not stop the transport
                log.warning("sip 400 reply failed", exc_info=True)
        return
    try:
        handler(msg, peer)
    except Exception:  # noqa: BLE001 - one bad message must not stop the transport
        log.exception("sip message handler failed", extra={"transport": peer.transport})


class UdpTransport(asyncio.DatagramProtocol):
    name = "UDP"
    reliable = False

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host, self._port = host, port
        self._sock: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sock, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self._host, self._port))

    @property
    def local(self) -> Addr:
        if self._sock is None:
            raise TransportError("transport not started")
        host, port = self._sock.get_extra_info("sockname")[:2]
        return host, port

    def datagram_received(self, data: bytes, addr: Addr) -> None:  # type: ignore[override]
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        peer = Peer(self.name, (addr[0], addr[1]))
        _deliver(data, peer, self._handler, lambda out: self.send_nowait(out, peer.addr), stream=False)

    def error_received(self, exc: Exception) -> None:
        log.info("sip udp socket error", extra={"error": type(exc).__name__})

    def send_nowait(self, data: bytes, addr: Addr) -> bool:
        if self._sock is None or self._sock.is_closing():
            return False
        self._sock.sendto(data, addr)
        return True

    async def send(self, data: bytes, addr: Addr) -> None:
        if not self.send_nowait(data, addr):
            raise TransportError("udp transport closed")

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


@dataclass(frozen=True)
class TcpLimits:
    """Bounds on SIP over TCP: connections accepted in all and from one address, how long a
    connection may stay silent, and how much unsent data a peer that stops reading may hold."""

    max_connections: int = 512
    max_per_source: int = 32
    idle_timeout_s: float = 300.0
    max_send_buffer: int = 1 << 20


class TcpTransport:
    name = "TCP"
    reliable = True

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        connect_timeout_s: float = 5.0,
        limits: TcpLimits | None = None,
    ) -> None:
        self._handler = handler
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None
        self._conns: dict[Addr, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connect_timeout = connect_timeout_s
        self.limits = limits or TcpLimits()
        self._accepted_from: collections.Counter[str] = collections.Counter()  # live inbound, by address
        self.closed_listeners: list[Callable[[Addr], None]] = []  # told each address whose connection ends

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, self._host, self._port)

    async def _open(self, addr: Addr) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(addr[0], addr[1])

    @property
    def local(self) -> Addr:
        if self._server is None or not self._server.sockets:
            raise TransportError("transport not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def inbound_connections(self) -> int:
        return sum(self._accepted_from.values())

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        source = addr[0]
        if self.inbound_connections >= self.limits.max_connections:
            reason = "tcp_connections"
        elif self._accepted_from[source] >= self.limits.max_per_source:
            reason = "tcp_per_source"
        else:
            reason = ""
        if reason:
            SIP_REFUSED.labels(reason=reason).inc()
            log.warning("sip tcp connection refused: limit reached", extra={"reason": reason})
            writer.close()
            return
        self._accepted_from[source] += 1
        try:
            await self._serve((addr[0], addr[1]), reader, writer)
        finally:
            self._accepted_from[source] -= 1
            if self._accepted_from[source] <= 0:
                del self._accepted_from[source]

    async def _serve(self, addr: Addr, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns[addr] = writer
        framer = StreamFramer()
        peer = Peer(self.name, addr)
        try:
            while data := await asyncio.wait_for(reader.read(65536), self.limits.idle_timeout_s):
                for raw in framer.feed(data):
                    _deliver(raw, peer, self._handler, writer.write, stream=True)
        except TimeoutError:
            log.info("sip tcp connection idle: closing", extra={"idle_s": self.limits.idle_timeout_s})
        except ParseError as exc:
            log.info("sip tcp stream unusable: closing", extra={"reason": exc.message})
        except (ConnectionError, OSError):
            log.info("sip tcp connection lost")
        finally:
            if self._conns.get(addr) is writer:
                del self._conns[addr]
            writer.close()
            for listener in list(self.closed_listeners):
                try:
                    listener(addr)
                except Exception:  # noqa: BLE001 - a listener must not stop the transport
                    log.exception("sip connection-closed listener failed")

    def send_nowait(self, data: bytes, addr: Addr) -> bool:
        writer = self._conns.get(addr)
        if writer is None or writer.is_closing():
            return False
        if writer.transport.get_write_buffer_size() > self.limits.max_send_buffer:
            log.warning("sip tcp peer not reading: closing")
            writer.close()
            return False
        writer.write(data)
        return True

    def connected(self, addr: Addr) -> bool:
        """Whether a connection to ``addr`` is open (a registration's flow is alive)."""
        writer = self._conns.get(addr)
        return writer is not None and not writer.is_closing()

    async def send(self, data: bytes, addr: Addr) -> None:
        if self.send_nowait(data, addr):
            return
        try:
            reader, writer = await asyncio.wait_for(self._open(addr), self._connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"{self.name.lower()} connect failed") from exc
        self._conns[addr] = writer
        task = asyncio.create_task(self._serve(addr, reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        writer.write(data)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._conns.values()):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                log.warning("sip tcp server close timed out")


@dataclass(frozen=True)
class TlsConfig:
    """Certificates for SIP over TLS: ours (PEM certificate chain and key, served to peers) and the
    CA bundle that peers' certificates are checked against (empty: the system's)."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    verify_server: bool = True  # check the certificate of a peer we connect to (name or IP in SAN)
    verify_client: bool = False  # ask peers that connect to us for a certificate from ``ca_file``
    handshake_timeout_s: float = 10.0

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.verify_client:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.verify_server:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:  # a peer that asks for a client certificate gets ours
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


class TlsTransport(TcpTransport):
    """SIP over TLS: the TCP transport with both directions wrapped by :mod:`ssl`. A connection we
    open checks the peer's certificate against the host name it was resolved from (see
    :meth:`expect_name`), else against its IP address."""

    name = "TLS"

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: TlsConfig,
        connect_timeout_s: float = 5.0,
        limits: TcpLimits | None = None,
    ) -> None:
        super().__init__(handler, host, port, connect_timeout_s=connect_timeout_s, limits=limits)
        self.tls = tls
        self._server_ctx = tls.server_context()  # raises at start-up when a file is missing or bad
        self._client_ctx = tls.client_context()
        self._names: dict[Addr, str] = {}

    def expect_name(self, addr: Addr, hostname: str) -> None:
        """The name ``addr`` was resolved from: the certificate a connection to it shows must carry it."""
        self._names[addr] = hostname
        while len(self._names) > 1024:
            self._names.pop(next(iter(self._names)))

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accepted,
            self._host,
            self._port,
            ssl=self._server_ctx,
            ssl_handshake_timeout=self.tls.handshake_timeout_s,
        )

    async def _open(self, addr: Addr) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            addr[0],
            addr[1],
            ssl=self._client_ctx,
            server_hostname=self._names.get(addr, addr[0]),
            ssl_handshake_timeout=self.tls.handshake_timeout_s,
        )
