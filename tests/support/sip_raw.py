"""A SIP peer on a raw UDP socket bound to a chosen loopback address (127.0.0.x), writing its
messages by hand: for tests of who may call and how often, and of the transaction layer."""

from __future__ import annotations

import asyncio

from phoneagent.edge.sip import UserAgent
from phoneagent.edge.sip.headers import ParseError
from phoneagent.edge.sip.message import SipMessage, SipResponse, parse_message
from phoneagent.edge.sip.transaction import new_branch

WAIT = 3.0


class RawPhone(asyncio.DatagramProtocol):
    """A SIP peer on a raw UDP socket bound to one loopback address: it writes INVITEs by hand."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[SipMessage] = asyncio.Queue()
        self.sock: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.inbox.put_nowait(parse_message(data))
        except ParseError:
            pass

    @property
    def addr(self) -> tuple[str, int]:
        assert self.sock is not None
        host, port = self.sock.get_extra_info("sockname")[:2]
        return host, port

    def send(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        assert self.sock is not None
        self.sock.sendto(msg.encode(), addr)

    async def next(self, wait_s: float = WAIT) -> SipMessage:
        return await asyncio.wait_for(self.inbox.get(), wait_s)

    def invite(self, ua: UserAgent, call_id: str, *, auth: str = "", body: bytes = b"") -> None:
        host, port = ua.local_address()
        me, my_port = self.addr
        lines = [
            f"INVITE sip:agent@{host}:{port} SIP/2.0",
            f"Via: SIP/2.0/UDP {me}:{my_port};branch={new_branch()};rport",
            f"From: <sip:+15550001111@{me}>;tag=raw",
            f"To: <sip:agent@{host}:{port}>",
            f"Call-ID: {call_id}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:peer@{me}:{my_port}>",
            "Max-Forwards: 70",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        assert self.sock is not None
        self.sock.sendto(data, ua.local_address())

    async def final(self, call_id: str) -> SipResponse:
        """The final response to the INVITE with ``call_id`` (others are skipped)."""
        while True:
            msg = await asyncio.wait_for(self.inbox.get(), WAIT)
            if isinstance(msg, SipResponse) and msg.status >= 200 and msg.call_id == call_id:
                return msg

    async def final_with(self, status: int) -> SipResponse:
        """The next final response with ``status``."""
        while True:
            msg = await asyncio.wait_for(self.inbox.get(), WAIT)
            if isinstance(msg, SipResponse) and msg.status == status:
                return msg


async def raw_phone(host: str) -> RawPhone:
    _, phone = await asyncio.get_running_loop().create_datagram_endpoint(RawPhone, local_addr=(host, 0))
    return phone
