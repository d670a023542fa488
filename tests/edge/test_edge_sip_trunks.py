"""Who may call the user agent, and how much one peer may hold: trunk allow-lists, the per-source
INVITE rate limit, digest with qop=auth across replicas, TCP connection caps and idle close, and
the server-transaction cap. Real SIP over loopback, each peer on its own 127.0.0.x address."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from phoneagent.edge.sip import (
    DigestServer,
    IncomingCall,
    SourceRateLimit,
    TcpLimits,
    Timers,
    Trunk,
    TrunkTable,
    UAConfig,
    UserAgent,
    offer,
)
from phoneagent.edge.sip.auth import Credentials, authorization_header
from phoneagent.edge.sip.message import SipResponse, StreamFramer, parse_message
from phoneagent.edge.sip.transaction import new_branch
from phoneagent.edge.sip.trunks import parse_trunks
from phoneagent.runtime.metrics import SIP_REFUSED
from support.common import wait_for
from support.sip_raw import WAIT, raw_phone

TIMERS = Timers(t1=0.05, t2=0.4, t4=0.5)


def refused(reason: str) -> float:
    return SIP_REFUSED.labels(reason=reason)._value.get()


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


class Callee:
    """The application behind the user agent: records the calls offered to it and leaves them
    ringing (their INVITE transactions stay open)."""

    def __init__(self) -> None:
        self.calls: list[IncomingCall] = []

    async def __call__(self, call: IncomingCall) -> None:
        self.calls.append(call)
        await call.ring()

    def sources(self) -> list[str]:
        return [c.peer.addr[0] for c in self.calls]


@pytest.fixture
async def make_ua() -> AsyncIterator[Callable[..., Any]]:
    made: list[UserAgent] = []

    async def make(**config: Any) -> tuple[UserAgent, Callee]:
        callee = Callee()
        ua = UserAgent(UAConfig(timers=TIMERS, **config), callee)
        await ua.start()
        made.append(ua)
        return ua, callee

    yield make
    for ua in made:
        await ua.close()


async def test_invite_from_a_source_no_trunk_lists_gets_403_and_no_call(make_ua) -> None:  # type: ignore[no-untyped-def]
    trunks = TrunkTable([Trunk("carrier", (net("127.0.0.2/32"),))])
    ua, callee = await make_ua(trunks=trunks)
    stranger, carrier = await raw_phone("127.0.0.1"), await raw_phone("127.0.0.2")
    before = refused("unknown_source")
    sdp = offer("127.0.0.1", 40100).encode()

    stranger.invite(ua, "stranger-1", body=sdp)
    assert (await stranger.final("stranger-1")).status == 403
    assert callee.calls == [] and ua.active_calls == 0
    assert refused("unknown_source") == before + 1

    carrier.invite(ua, "carrier-1", body=sdp)
    await wait_for(lambda: callee.calls, timeout=WAIT)
    assert callee.sources() == ["127.0.0.2"]
    for phone in (stranger, carrier):
        assert phone.sock is not None
        phone.sock.close()


async def test_a_flood_from_one_source_is_limited_while_another_source_calls(make_ua) -> None:  # type: ignore[no-untyped-def]
    trunks = TrunkTable(parse_trunks('[{"name": "lab", "sources": ["127.0.0.0/8"]}]'))
    ua, callee = await make_ua(trunks=trunks, invite_limit=SourceRateLimit(rate=0.2, burst=3))
    flood, caller = await raw_phone("127.0.0.3"), await raw_phone("127.0.0.1")
    before = refused("rate_limited")
    sdp = offer("127.0.0.1", 40102).encode()

    for i in range(12):
        flood.invite(ua, f"flood-{i}", body=sdp)
    limited: dict[str, SipResponse] = {}
    while len(limited) < 9:  # (a 503 is retransmitted until ACKed: count each INVITE once)
        resp = await flood.final_with(503)
        limited[resp.call_id] = resp
    await wait_for(lambda: callee.sources().count("127.0.0.3") == 3, timeout=WAIT)  # the burst rings
    assert all(int(r.headers.get("Retry-After") or 0) >= 1 for r in limited.values())
    assert refused("rate_limited") == before + 9

    caller.invite(ua, "caller-1", body=sdp)  # the flood used up its own bucket, not this one
    await wait_for(lambda: "127.0.0.1" in callee.sources(), timeout=WAIT)
    for phone in (flood, caller):
        assert phone.sock is not None
        phone.sock.close()


async def test_digest_trunk_needs_qop_and_the_shared_nonce_secret(make_ua) -> None:  # type: ignore[no-untyped-def]
    """Two replicas with one secret accept each other's nonces; a third with another secret does
    not, and no replica takes a reply without qop=auth."""
    trunks = TrunkTable(parse_trunks('[{"name": "pbx", "username": "pbx"}]'))
    secret = "a-shared-secret-of-at-least-32-characters"

    def digest(key: str) -> DigestServer:
        return DigestServer("phone-agent", {"pbx": "pw"}, secret=key)

    a, _ = await make_ua(trunks=trunks, auth=digest(secret))
    b, b_callee = await make_ua(trunks=trunks, auth=digest(secret))
    c, c_callee = await make_ua(trunks=trunks, auth=digest("another-secret-of-at-least-32-characters"))
    phone = await raw_phone("127.0.0.4")
    sdp = offer("127.0.0.1", 40104).encode()

    phone.invite(a, "ch-1", body=sdp)
    challenge = await phone.final("ch-1")
    assert challenge.status == 401
    header = challenge.headers.get("WWW-Authenticate") or ""
    uri = f"sip:agent@{b.local_address()[0]}:{b.local_address()[1]}"
    reply = authorization_header(header, "INVITE", uri, Credentials("pbx", "pw"))
    phone.invite(b, "at-b", auth=reply, body=sdp)
    await wait_for(lambda: b_callee.calls, timeout=WAIT)

    uri_c = f"sip:agent@{c.local_address()[0]}:{c.local_address()[1]}"
    phone.invite(
        c, "at-c", auth=authorization_header(header, "INVITE", uri_c, Credentials("pbx", "pw")), body=sdp
    )
    assert (await phone.final("at-c")).status == 401
    assert c_callee.calls == []

    before = refused("auth_failed")
    bare = authorization_header(header.replace(', qop="auth"', ""), "INVITE", uri, Credentials("pbx", "pw"))
    assert "qop" not in bare
    phone.invite(b, "no-qop", auth=bare, body=sdp)
    assert (await phone.final("no-qop")).status == 401
    assert len(b_callee.calls) == 1 and refused("auth_failed") == before + 1
    assert phone.sock is not None
    phone.sock.close()


async def test_credentials_of_a_trunk_from_another_trunks_address_get_403(make_ua) -> None:  # type: ignore[no-untyped-def]
    trunks = TrunkTable(
        parse_trunks(
            '[{"name": "a", "sources": ["127.0.0.5/32"], "username": "a"},'
            ' {"name": "b", "sources": ["127.0.0.6/32"], "username": "b"}]'
        )
    )
    ua, callee = await make_ua(trunks=trunks, auth=DigestServer("phone-agent", {"a": "pa", "b": "pb"}))
    phone = await raw_phone("127.0.0.6")
    sdp = offer("127.0.0.1", 40106).encode()
    phone.invite(ua, "c-1", body=sdp)
    header = (await phone.final("c-1")).headers.get("WWW-Authenticate") or ""
    uri = f"sip:agent@{ua.local_address()[0]}:{ua.local_address()[1]}"
    before = refused("wrong_trunk")
    phone.invite(
        ua, "c-2", auth=authorization_header(header, "INVITE", uri, Credentials("a", "pa")), body=sdp
    )
    assert (await phone.final("c-2")).status == 403
    assert callee.calls == [] and refused("wrong_trunk") == before + 1
    phone.invite(
        ua, "c-3", auth=authorization_header(header, "INVITE", uri, Credentials("b", "pb"), nc=2), body=sdp
    )
    await wait_for(lambda: callee.calls, timeout=WAIT)
    assert phone.sock is not None
    phone.sock.close()


async def test_server_transactions_are_capped_with_a_clean_503(make_ua) -> None:  # type: ignore[no-untyped-def]
    ua, callee = await make_ua(max_transactions=2)
    phone = await raw_phone("127.0.0.1")
    before = refused("transactions_full")
    sdp = offer("127.0.0.1", 40108).encode()
    phone.invite(ua, "t-1", body=sdp)
    phone.invite(ua, "t-2", body=sdp)
    await wait_for(lambda: len(callee.calls) == 2, timeout=WAIT)  # both ringing: transactions open
    phone.invite(ua, "t-3", body=sdp)
    full = await phone.final("t-3")
    assert full.status == 503 and full.headers.get("Retry-After")
    assert len(callee.calls) == 2 and refused("transactions_full") == before + 1
    await callee.calls[0].reject(486)  # unACKed, its transaction ends at timer H (64 T1): room again
    assert (await phone.final("t-1")).status == 486
    await wait_for(lambda: len(ua.layer._servers) < 2, timeout=64 * TIMERS.t1 + WAIT)
    phone.invite(ua, "t-4", body=sdp)
    await wait_for(lambda: len(callee.calls) == 3, timeout=WAIT)
    assert phone.sock is not None
    phone.sock.close()


# --- TCP --------------------------------------------------------------------------------------


class TcpPhone:
    """A SIP peer on one TCP connection from a chosen loopback address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()

    @classmethod
    async def connect(cls, ua: UserAgent, source: str) -> TcpPhone:
        host, port = ua.local_address("TCP")
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        return cls(reader, writer)

    def options(self, ua: UserAgent, call_id: str) -> None:
        host, port = ua.local_address("TCP")
        me, my_port = self.writer.get_extra_info("sockname")[:2]
        text = (
            f"OPTIONS sip:agent@{host}:{port};transport=tcp SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {me}:{my_port};branch={new_branch()}\r\n"
            f"From: <sip:probe@{me}>;tag=t\r\nTo: <sip:agent@{host}>\r\nCall-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        self.writer.write(text.encode())

    async def response(self) -> SipResponse:
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), WAIT)
            assert data, "connection closed"
            for raw in self.framer.feed(data):
                msg = parse_message(raw, stream=True)
                if isinstance(msg, SipResponse):
                    return msg

    async def closed_by_peer(self, within_s: float) -> bool:
        """The user agent closed this connection within ``within_s`` (read gives EOF)."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), within_s):
                pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    def close(self) -> None:
        self.writer.close()


async def test_tcp_connections_are_capped_per_source_and_in_all(make_ua) -> None:  # type: ignore[no-untyped-def]
    limits = TcpLimits(max_connections=3, max_per_source=2, idle_timeout_s=30)
    ua, _ = await make_ua(transports=("tcp",), tcp=limits)
    before = (refused("tcp_per_source"), refused("tcp_connections"))
    first = [await TcpPhone.connect(ua, "127.0.0.1") for _ in range(2)]
    for i, phone in enumerate(first):
        phone.options(ua, f"o-{i}")
        assert (await phone.response()).status == 200
    third = await TcpPhone.connect(ua, "127.0.0.1")
    assert await third.closed_by_peer(WAIT), "a third connection from one address must be closed"
    other = await TcpPhone.connect(ua, "127.0.0.7")  # another address still gets in
    other.options(ua, "o-other")
    assert (await other.response()).status == 200
    over = await TcpPhone.connect(ua, "127.0.0.8")  # three in all: the cap
    assert await over.closed_by_peer(WAIT)
    assert (refused("tcp_per_source"), refused("tcp_connections")) == (before[0] + 1, before[1] + 1)

    first[0].close()  # a slot frees up once the user agent sees the close
    await wait_for(lambda: ua._transports["TCP"].inbound_connections == 2, timeout=WAIT)
    again = await TcpPhone.connect(ua, "127.0.0.8")
    again.options(ua, "o-again")
    assert (await again.response()).status == 200
    for phone in (first[1], third, other, over, again):
        phone.close()


async def test_a_silent_tcp_connection_is_closed_after_the_idle_timeout(make_ua) -> None:  # type: ignore[no-untyped-def]
    ua, _ = await make_ua(transports=("tcp",), tcp=TcpLimits(idle_timeout_s=0.3))
    phone = await TcpPhone.connect(ua, "127.0.0.1")
    phone.options(ua, "idle-1")
    assert (await phone.response()).status == 200  # traffic keeps it open
    assert await phone.closed_by_peer(WAIT)
    await wait_for(lambda: ua._transports["TCP"].inbound_connections == 0, timeout=WAIT)
    phone.close()


async def test_options_from_an_unknown_source_get_403(make_ua) -> None:  # type: ignore[no-untyped-def]
    ua, _ = await make_ua(transports=("tcp",), trunks=TrunkTable([Trunk("x", (net("127.0.0.9/32"),))]))
    stranger, known = await TcpPhone.connect(ua, "127.0.0.1"), await TcpPhone.connect(ua, "127.0.0.9")
    stranger.options(ua, "s")
    known.options(ua, "k")
    assert (await stranger.response()).status == 403
    assert (await known.response()).status == 200
    stranger.close()
    known.close()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{}", "JSON list"),
        ('[{"name": "x"}]', "needs sources, a username, a register, or more than one"),
        ('[{"name": "x", "sources": ["0.0.0.0/0"]}]', "every address needs a username"),
        ('[{"name": "x", "sources": ["not-an-ip"]}]', "CIDR"),
        ('[{"name": "x", "username": "u"}, {"name": "x", "username": "v"}]', "names must be unique"),
        ('[{"name": "x", "sources": ["10.0.0.1"], "password": "p"}]', "must be an object"),
        ('[{"name": "x", "register": {"registrar": "sip:pbx"}}]', "register.user"),
        ('[{"name": "x", "register": {"registrar": "pbx", "user": "1"}}]', "sip: or sips: URI"),
        ('[{"name": "x", "register": {"registrar": "sip:1@pbx", "user": "1"}}]', "without a user"),
        (
            '[{"name": "x", "register": {"registrar": "sip:pbx;transport=sctp", "user": "1"}}]',
            "udp, tcp or tls",
        ),
        ('[{"name": "x", "register": {"registrar": "sip:pbx", "user": "1", "expires": 0}}]', "expires"),
        (
            '[{"name": "x", "register": {"registrar": "sip:pbx", "user": "1", "keepalive_s": -1}}]',
            "keepalive_s",
        ),
        (
            '[{"name": "x", "register": {"registrar": "sip:pbx", "user": "1", "password": "p"}}]',
            "register must be",
        ),
    ],
)
def test_bad_trunk_lists_are_refused_with_a_reason(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_trunks(text)


def test_a_registering_trunk_admits_its_registrar_only_while_registered() -> None:
    (office, carrier) = parse_trunks(
        '[{"name": "office", "register": {"registrar": "sips:pbx.example.com:5061", "user": "1001",'
        ' "expires": 600, "keepalive_s": 15}}, {"name": "carrier", "sources": ["192.0.2.0/24"]}]'
    )
    assert office.register is not None
    assert (office.register.expires, office.register.keepalive_s) == (600, 15.0)
    assert str(office.register.aor) == "sips:1001@pbx.example.com"
    table = TrunkTable([office, carrier])
    assert table.for_source("203.0.113.5") == []  # not an "any source" trunk
    table.set_flow("office", ["203.0.113.5"])
    assert table.for_source("203.0.113.5") == [office]
    assert table.for_source("192.0.2.9") == [carrier]
    table.set_flow("office", [])  # registration lost
    assert table.for_source("203.0.113.5") == []


def test_rate_limit_refills_at_its_rate() -> None:
    now = [0.0]
    limit = SourceRateLimit(rate=2.0, burst=2, clock=lambda: now[0])
    assert [limit.take("a"), limit.take("a")] == [0.0, 0.0]
    assert limit.take("a") == pytest.approx(0.5)
    assert limit.take("b") == 0.0  # its own bucket
    now[0] += 0.5
    assert limit.take("a") == 0.0


def test_each_trunk_has_an_srtp_policy_and_the_call_gets_its_trunks() -> None:
    trunks = parse_trunks(
        '[{"name": "carrier", "sources": ["203.0.113.0/24"], "srtp": "required"},'
        ' {"name": "pbx", "sources": ["198.51.100.0/24"], "username": "pbx", "srtp": "off"},'
        ' {"name": "office", "sources": ["198.51.100.0/24"], "username": "office"}]'
    )
    table = TrunkTable(trunks)
    assert [t.srtp for t in trunks] == ["required", "off", "optional"]
    carrier = table.for_call("203.0.113.5", None)
    assert carrier is not None and carrier.srtp == "required"
    pbx, office = table.for_call("198.51.100.7", "pbx"), table.for_call("198.51.100.7", "office")
    assert pbx is not None and pbx.name == "pbx" and office is not None and office.name == "office"
    assert table.for_call("198.51.100.7", None) is None and table.for_call("192.0.2.1", None) is None
    with pytest.raises(ValueError, match="srtp must be one of"):
        parse_trunks('[{"name": "x", "sources": ["10.0.0.0/8"], "srtp": "yes"}]')
