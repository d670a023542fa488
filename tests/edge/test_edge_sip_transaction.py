"""Transactions over real UDP/TCP sockets on 127.0.0.1, with a raw socket as the peer and T1 shrunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from phoneagent.edge.sip.message import SipRequest, SipResponse, make_response, parse_message
from phoneagent.edge.sip.sockets import Peer, TcpTransport, TransportError, UdpTransport
from phoneagent.edge.sip.transaction import ServerTransaction, Timers, TransactionLayer, new_branch
from support.sip_raw import RawPhone, raw_phone

T1 = 0.02


class Recorder:
    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[SipRequest, ServerTransaction | None]] = asyncio.Queue()
        self.stray: list[SipResponse] = []

    def on_request(self, request: SipRequest, txn: ServerTransaction | None, peer: Peer) -> None:
        self.requests.put_nowait((request, txn))

    def on_stray_response(self, response: SipResponse, peer: Peer) -> None:
        self.stray.append(response)


@pytest.fixture
async def setup() -> AsyncIterator[tuple[TransactionLayer, UdpTransport, RawPhone, Recorder]]:
    rec = Recorder()
    transports: dict = {}
    layer = TransactionLayer(transports, rec, Timers(t1=T1, t2=0.08, t4=0.1))
    udp = UdpTransport(layer.receive)
    await udp.start()
    transports["UDP"] = udp
    raw = await raw_phone("127.0.0.1")
    yield layer, udp, raw, rec
    layer.close()
    await udp.close()
    assert raw.sock is not None
    raw.sock.close()


def request(method: str, sent_by: tuple[str, int], branch: str | None = None, seq: int = 1) -> SipRequest:
    text = (
        f"{method} sip:x@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by[0]}:{sent_by[1]};branch={branch or new_branch()};rport\r\n"
        "From: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c1\r\n"
        f"CSeq: {seq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, SipRequest)
    return msg


async def test_client_non_invite_retransmits_then_times_out(setup) -> None:  # type: ignore[no-untyped-def]
    layer, udp, raw, _ = setup
    timed_out = asyncio.Event()
    req = request("OPTIONS", udp.local)
    await layer.request(req, Peer("UDP", raw.addr), lambda r: None, timed_out.set)
    await asyncio.wait_for(timed_out.wait(), 64 * T1 + 1)
    copies = raw.inbox.qsize()
    # E fires at T1, 2T1, 4T1, then every T2 until F (64*T1): at least 5 copies, far fewer than 64.
    assert 5 <= copies <= 20


async def test_client_stops_on_final_and_non_2xx_invite_is_acked(setup) -> None:  # type: ignore[no-untyped-def]
    layer, udp, raw, _ = setup
    got: asyncio.Queue[SipResponse] = asyncio.Queue()
    invite = request("INVITE", udp.local)
    await layer.request(invite, Peer("UDP", raw.addr), got.put_nowait, lambda: None)
    first = await raw.next()
    assert isinstance(first, SipRequest) and first.method == "INVITE"
    busy = make_response(first, 486, to_tag="t9")
    raw.send(busy, udp.local)
    assert (await asyncio.wait_for(got.get(), 2)).status == 486
    ack = await raw.next()
    while isinstance(ack, SipRequest) and ack.method == "INVITE":  # retransmissions in flight
        ack = await raw.next()
    assert isinstance(ack, SipRequest) and ack.method == "ACK"
    assert ack.top_via.branch == invite.top_via.branch and ack.to.tag == "t9" and ack.cseq.seq == 1
    raw.send(busy, udp.local)  # a retransmitted final is absorbed and ACKed again
    again = await raw.next()
    assert isinstance(again, SipRequest) and again.method == "ACK"
    assert got.empty()


async def test_server_absorbs_retransmissions(setup) -> None:  # type: ignore[no-untyped-def]
    layer, udp, raw, rec = setup
    req = request("BYE", raw.addr)
    raw.send(req, udp.local)
    seen, txn = await asyncio.wait_for(rec.requests.get(), 2)
    assert txn is not None
    raw.send(req, udp.local)  # before the answer: absorbed silently
    txn.respond(make_response(seen, 200))
    assert isinstance(await raw.next(), SipResponse)
    raw.send(req, udp.local)  # after: the 200 is repeated, the TU does not see it
    resp = await raw.next()
    assert isinstance(resp, SipResponse) and resp.status == 200
    assert rec.requests.empty()


async def test_server_invite_retransmits_final_until_ack(setup) -> None:  # type: ignore[no-untyped-def]
    layer, udp, raw, rec = setup
    invite = request("INVITE", raw.addr)
    raw.send(invite, udp.local)
    trying = await raw.next()
    assert isinstance(trying, SipResponse) and trying.status == 100
    seen, txn = await asyncio.wait_for(rec.requests.get(), 2)
    assert txn is not None
    txn.respond(make_response(seen, 603, to_tag="x"))
    for _ in range(3):  # the 603 itself and two timer G retransmissions
        resp = await raw.next()
        assert isinstance(resp, SipResponse) and resp.status == 603
    ack = request("ACK", raw.addr, branch=invite.top_via.branch)
    raw.send(ack, udp.local)
    late = 0
    with pytest.raises(TimeoutError):  # quiet for longer than the longest G interval (T2)
        while True:
            await raw.next(wait_s=10 * T1)
            late += 1
            assert late <= 2, "final response still retransmitted after ACK"
    assert txn.state.value in ("confirmed", "terminated")
    assert rec.requests.empty()  # the ACK for a non-2xx never reaches the TU


async def test_tcp_transport_and_connect_failure() -> None:
    rec = Recorder()
    transports: dict = {}
    layer = TransactionLayer(transports, rec, Timers(t1=T1))
    tcp = TcpTransport(layer.receive)
    await tcp.start()
    transports["TCP"] = tcp
    server_rec = Recorder()
    server_transports: dict = {}
    server_layer = TransactionLayer(server_transports, server_rec, Timers(t1=T1))
    server = TcpTransport(server_layer.receive)
    await server.start()
    server_transports["TCP"] = server
    try:
        got: asyncio.Queue[SipResponse] = asyncio.Queue()
        req = request("OPTIONS", tcp.local)
        req.headers.set("Via", req.headers.get("Via", "").replace("UDP", "TCP"))  # type: ignore[union-attr]
        await layer.request(req, Peer("TCP", server.local), got.put_nowait, lambda: None)
        seen, txn = await asyncio.wait_for(server_rec.requests.get(), 2)
        assert txn is not None and not txn.request.body
        txn.respond(make_response(seen, 200))
        assert (await asyncio.wait_for(got.get(), 2)).status == 200
        with pytest.raises(TransportError):
            closed = ("127.0.0.1", 9)  # discard port: nothing listens there
            await layer.request(
                request("OPTIONS", tcp.local), Peer("TCP", closed), lambda r: None, lambda: None
            )
    finally:
        layer.close()
        server_layer.close()
        await tcp.close()
        await server.close()
