"""The user agent against a raw UDP socket: malformed input, unsupported methods, lost ACKs."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator

import pytest
from phoneagent.edge.sip import IncomingCall, Timers, UAConfig, UserAgent, answer, offer
from phoneagent.edge.sip.headers import ParseError
from phoneagent.edge.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from phoneagent.edge.sip.transaction import new_branch

T1 = 0.02


class Raw(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[SipMessage] = asyncio.Queue()
        self.sock: asyncio.DatagramTransport | None = None
        self.unparseable = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.inbox.put_nowait(parse_message(data))
        except ParseError:
            self.unparseable += 1

    @property
    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.get_extra_info("sockname")[1])

    async def expect(self, wait_s: float = 2.0) -> SipMessage:
        return await asyncio.wait_for(self.inbox.get(), wait_s)

    async def response(self, wait_s: float = 2.0) -> SipResponse:
        while True:
            msg = await self.expect(wait_s)
            if isinstance(msg, SipResponse) and msg.status != 100:
                return msg


@pytest.fixture
async def env() -> AsyncIterator[tuple[UserAgent, Raw, asyncio.Queue[IncomingCall]]]:
    calls: asyncio.Queue[IncomingCall] = asyncio.Queue()

    async def on_call(call: IncomingCall) -> None:
        calls.put_nowait(call)
        if call.remote_sdp is None:  # offerless INVITE: our 200 carries the offer
            await call.answer(offer("127.0.0.1", 40010))
        else:
            await call.answer(answer(call.remote_sdp, address="127.0.0.1", port=40010))

    ua = UserAgent(UAConfig(timers=Timers(t1=T1, t2=0.08, t4=0.1)), on_call)
    await ua.start()
    _, raw = await asyncio.get_running_loop().create_datagram_endpoint(Raw, local_addr=("127.0.0.1", 0))
    yield ua, raw, calls
    assert raw.sock is not None
    raw.sock.close()
    await ua.close()


def build(
    method: str,
    raw: Raw,
    ua: UserAgent,
    *,
    to_tag: str = "",
    body: bytes = b"",
    call_id: str = "raw-1",
    branch: str | None = None,
) -> bytes:
    host, port = ua.local_address()
    to = f"<sip:agent@{host}:{port}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:agent@{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{raw.port};branch={branch or new_branch()};rport",
        "From: <sip:+15550001111@127.0.0.1>;tag=raw",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:peer@127.0.0.1:{raw.port}>",
        "Max-Forwards: 70",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def send(raw: Raw, ua: UserAgent, data: bytes) -> None:
    assert raw.sock is not None
    raw.sock.sendto(data, ua.local_address())


async def test_malformed_datagrams_get_400_or_are_dropped(env) -> None:  # type: ignore[no-untyped-def]
    ua, raw, _ = env
    for junk in (b"\x00\xff" * 50, b"INVITE nonsense\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"\r\n\r\n"):
        send(raw, ua, junk)
    bad_length = build("OPTIONS", raw, ua).replace(b"Content-Length: 0", b"Content-Length: 50")
    send(raw, ua, bad_length)
    resp = await raw.response()
    assert resp.status == 400
    bad_sdp = build("INVITE", raw, ua, body=b"v=0\r\nm=audio x RTP/AVP 0\r\n")
    send(raw, ua, bad_sdp)
    assert (await raw.response()).status == 400
    send(raw, ua, build("OPTIONS", raw, ua))  # still serving
    assert (await raw.response()).status == 200
    with pytest.raises(TimeoutError):  # the junk got no answer; the unACKed 400 to the INVITE repeats
        while True:
            late = await raw.expect(0.2)
            assert isinstance(late, SipResponse) and late.status == 400 and late.cseq.method == "INVITE"


@pytest.mark.parametrize(
    ("method", "hops", "status"),
    [("INVITE", b"0", 483), ("BYE", b"0", 483), ("OPTIONS", b"0", 200), ("INVITE", b"abc", 400)],
)
async def test_max_forwards(env, method: str, hops: bytes, status: int) -> None:  # type: ignore[no-untyped-def]
    ua, raw, calls = env
    body = offer("127.0.0.1", 40070).encode() if method == "INVITE" else b""
    data = build(method, raw, ua, body=body, call_id=f"hops-{method}")
    send(raw, ua, data.replace(b"Max-Forwards: 70", b"Max-Forwards: " + hops))
    resp = await raw.response()
    assert resp.status == status and resp.call_id == f"hops-{method}"
    assert calls.empty()  # the INVITE never became a call


async def test_unparseable_cseq_gets_a_well_formed_400(env) -> None:  # type: ignore[no-untyped-def]
    ua, raw, calls = env
    branch = new_branch()
    body = offer("127.0.0.1", 40080).encode()
    data = build("INVITE", raw, ua, body=body, call_id="bad-cseq", branch=branch)
    send(raw, ua, data.replace(b"CSeq: 1 INVITE", b"CSeq: abc INVITE"))
    resp = await raw.response()
    assert resp.status == 400 and resp.call_id == "bad-cseq"
    assert resp.top_via.branch == branch and resp.cseq.method == "INVITE"  # the client can match it
    assert raw.unparseable == 0 and calls.empty()


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("REGISTER", 405),
        ("SUBSCRIBE", 405),
        ("FOOBAR", 501),
        ("BYE", 481),
        ("CANCEL", 481),
    ],
)
async def test_method_handling(env, method: str, status: int) -> None:  # type: ignore[no-untyped-def]
    ua, raw, _ = env
    send(raw, ua, build(method, raw, ua))
    resp = await raw.response()
    assert resp.status == status
    if status == 405:
        assert "INVITE" in resp.headers.get_all("Allow")


async def test_in_dialog_request_for_unknown_dialog_gets_481(env) -> None:  # type: ignore[no-untyped-def]
    ua, raw, _ = env
    send(raw, ua, build("INFO", raw, ua, to_tag="nosuch"))
    assert (await raw.response()).status == 481


async def test_200_retransmitted_until_ack_then_bye_without_ack(env) -> None:  # type: ignore[no-untyped-def]
    ua, raw, calls = env
    sdp = offer("127.0.0.1", 40020).encode()
    send(raw, ua, build("INVITE", raw, ua, body=sdp, call_id="noack"))
    oks = 0
    bye: SipRequest | None = None
    while bye is None:
        msg = await raw.expect(64 * T1 + 1)
        if isinstance(msg, SipResponse) and msg.status == 200:
            oks += 1
        elif isinstance(msg, SipRequest) and msg.method == "BYE":
            bye = msg
    assert oks >= 4  # T1, 2T1, 4T1, then every T2 until 64*T1
    assert bye.call_id == "noack" and bye.from_.tag != "raw"
    call = calls.get_nowait()
    assert call.dialog is not None and call.dialog.ended.is_set()


async def test_ack_stops_200_retransmissions(env) -> None:  # type: ignore[no-untyped-def]
    ua, raw, calls = env
    send(raw, ua, build("INVITE", raw, ua, body=offer("127.0.0.1", 40030).encode(), call_id="acked"))
    ok = await raw.response()
    assert ok.status == 200 and ok.headers.get("Content-Type") == "application/sdp"
    ack = build("ACK", raw, ua, to_tag=ok.to.tag, call_id="acked")
    send(raw, ua, ack)
    call = await asyncio.wait_for(calls.get(), 2)
    assert call.dialog is not None
    await asyncio.wait_for(call.dialog.confirmed.wait(), 2)
    late = 0
    with pytest.raises(TimeoutError):
        while True:
            await raw.expect(10 * T1)
            late += 1
            assert late <= 2, "200 OK still retransmitted after ACK"
    assert not call.dialog.ended.is_set()


async def test_tcp_garbage_closes_that_connection_only() -> None:
    async def on_call(call: IncomingCall) -> None:
        assert call.remote_sdp is not None
        await call.answer(answer(call.remote_sdp, address="127.0.0.1", port=40040))

    ua = UserAgent(UAConfig(transports=("tcp",), timers=Timers(t1=T1)), on_call)
    caller = UserAgent(UAConfig(transports=("tcp",), timers=Timers(t1=T1)))
    await ua.start()
    await caller.start()
    host, port = ua.local_address()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        bad_request = (
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKx\r\n"
            b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: g\r\nCSeq: 1 BYE\r\nl: 0\r\n\r\n"
        )
        writer.write(bad_request)  # replyable: CSeq method does not match
        reply = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert reply.startswith(b"SIP/2.0 400 ")
        writer.write(b"GARBAGE\r\nContent-Length: 99999999\r\n\r\n")  # unframeable: connection dropped
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        dialog = await asyncio.wait_for(
            caller.call(f"sip:agent@{host}:{port};transport=tcp", offer("127.0.0.1", 40050)), 2
        )
        await dialog.bye()
    finally:
        await caller.close()
        await ua.close()


async def test_mutated_datagrams_never_break_a_handler(env, caplog) -> None:  # type: ignore[no-untyped-def]
    ua, raw, _ = env
    rng = random.Random(7)
    sdp = offer("127.0.0.1", 40060).encode()
    seeds = [build("INVITE", raw, ua, body=sdp, call_id=f"m{i}") for i in range(3)]
    seeds += [build("BYE", raw, ua, to_tag="t"), build("OPTIONS", raw, ua), build("CANCEL", raw, ua)]
    alphabet = b' :;,<>"@=\r\n\x00z9SIP/2.0-1'
    with caplog.at_level(logging.WARNING, logger="phoneagent.edge.sip"):
        for _ in range(300):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(data))
                if rng.random() < 0.5:
                    data[pos] = rng.choice(alphabet)
                else:
                    del data[pos : pos + rng.randint(1, 12)]
            send(raw, ua, bytes(data))
        check = build("OPTIONS", raw, ua, call_id="final-check")
        send(raw, ua, check)
        deadline = asyncio.get_running_loop().time() + 5
        while True:  # drain whatever was answered until the final OPTIONS reply
            assert asyncio.get_running_loop().time() < deadline, "user agent stopped answering"
            try:
                msg = await raw.expect(0.5)
            except TimeoutError:
                send(raw, ua, check)  # a burst can overflow a socket buffer: UDP may drop it
                continue
            if isinstance(msg, SipResponse) and msg.call_id == "final-check":
                break
    assert msg.status == 200
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, [r.getMessage() for r in failures]
    assert raw.unparseable == 0  # everything the UA sent back was well-formed
