"""Outbound registration against a scripted registrar (a UDP socket answering REGISTER as each test
says): what the registrar grants, 423 Interval Too Brief, Retry-After, and the binding removed at
stop. The real-registrar behaviour (kamailio) is in test_edge_sip_register.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from phoneagent.edge.sip import DigestServer, Timers, UAConfig, UserAgent
from phoneagent.edge.sip.message import SipRequest, SipResponse, make_response, parse_message
from phoneagent.edge.sip.registration import Registration, RegState, refresh_after
from phoneagent.edge.sip.trunks import TrunkTable, parse_trunks
from phoneagent.runtime.retry import RetryPolicy
from support.common import wait_for

Answer = Callable[[SipRequest], SipResponse]


class Registrar(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[float, SipRequest]] = []
        self.sock: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        msg = parse_message(data)
        assert isinstance(msg, SipRequest)
        if msg.method != "REGISTER":
            return
        self.requests.append((asyncio.get_running_loop().time(), msg))
        assert self.sock is not None
        self.sock.sendto(self.answer(msg).encode(), addr)

    @property
    def expires(self) -> list[str]:
        return [r.headers.get("Expires") or "" for _, r in self.requests]


async def started(
    answer: Answer, password: str = "", **register: object
) -> tuple[Registrar, UserAgent, Registration]:
    loop = asyncio.get_running_loop()
    _, registrar = await loop.create_datagram_endpoint(lambda: Registrar(answer), local_addr=("127.0.0.1", 0))
    assert registrar.sock is not None
    port = registrar.sock.get_extra_info("sockname")[1]
    config = {"registrar": f"sip:127.0.0.1:{port}", "user": "1001", "keepalive_s": 0, **register}
    (trunk,) = parse_trunks(json.dumps([{"name": "scripted", "register": config}]))
    table = TrunkTable([trunk])
    ua = UserAgent(UAConfig(trunks=table, timers=Timers(t1=0.05)))
    await ua.start()
    reg = Registration(
        ua, trunk, password, table=table, backoff=RetryPolicy(retries=0, backoff_s=0.1, max_backoff_s=0.2)
    )
    reg.start()
    return registrar, ua, reg


async def stopped(registrar: Registrar, ua: UserAgent, reg: Registration) -> None:
    await reg.stop()
    await ua.close()
    assert registrar.sock is not None
    registrar.sock.close()


def ok(contact_expires: int | None = None, header: int | None = None) -> Answer:
    def answer(req: SipRequest) -> SipResponse:
        resp = make_response(req, 200, to_tag="r")
        contact = req.headers.get("Contact") or ""
        if contact_expires is not None:
            contact += f";expires={contact_expires}"
        resp.headers.add("Contact", contact)
        if header is not None:
            resp.headers.add("Expires", str(header))
        return resp

    return answer


async def test_the_contacts_granted_expiry_wins_over_the_expires_header() -> None:
    registrar, ua, reg = await started(ok(contact_expires=90, header=3600), expires=300)
    try:
        await wait_for(lambda: reg.state is RegState.REGISTERED, timeout=3)
        assert registrar.expires == ["300"]
        assert 85 <= reg.status()["expires_in_s"] <= 90
        assert refresh_after(90) == 60 and refresh_after(4) == 2
    finally:
        await stopped(registrar, ua, reg)


async def test_interval_too_brief_is_asked_again_with_min_expires() -> None:
    def answer(req: SipRequest) -> SipResponse:
        if int(req.headers.get("Expires") or 0) < 120:
            resp = make_response(req, 423, "Interval Too Brief", to_tag="r")
            resp.headers.add("Min-Expires", "120")
            return resp
        return ok()(req)

    registrar, ua, reg = await started(answer, expires=30)
    try:
        await wait_for(lambda: reg.state is RegState.REGISTERED, timeout=3)
        assert registrar.expires == ["30", "120"]
        assert reg.status()["expires_in_s"] >= 115  # no Contact expiry, no header: what was asked
    finally:
        await stopped(registrar, ua, reg)


async def test_a_refusal_with_retry_after_waits_that_long_then_registers() -> None:
    def answer(req: SipRequest) -> SipResponse:
        if len(registrar.requests) == 1:
            resp = make_response(req, 503, to_tag="r")
            resp.headers.add("Retry-After", "1")
            return resp
        return ok()(req)

    registrar, ua, reg = await started(answer)
    try:
        await wait_for(lambda: reg.state is RegState.REGISTERED, timeout=4)
        assert reg.failures == 0 and reg.last_status == 200
        (first, _), (second, _) = registrar.requests[:2]
        assert second - first >= 0.95  # Retry-After, not the 0.1 s back-off
    finally:
        await stopped(registrar, ua, reg)


async def test_a_refusal_keeps_failing_with_back_off_and_admits_nothing() -> None:
    registrar, ua, reg = await started(lambda req: make_response(req, 403, to_tag="r"))
    try:
        await wait_for(lambda: reg.failures >= 3, timeout=3)
        assert reg.state is RegState.FAILED and reg.last_status == 403
        assert ua.config.trunks is not None and ua.config.trunks.for_source("127.0.0.1") == []
    finally:
        await stopped(registrar, ua, reg)


async def test_stop_removes_the_binding_answering_the_challenge() -> None:
    digest = DigestServer("registrar.test", {"1001": "pw"})

    def answer(req: SipRequest) -> SipResponse:
        header = req.headers.get("Authorization")
        if header is None or not digest.verify("REGISTER", header).ok:
            resp = make_response(req, 401, to_tag="r")
            resp.headers.add("WWW-Authenticate", digest.challenge())
            return resp
        return ok()(req)

    registrar, ua, reg = await started(answer, password="pw")
    try:
        await wait_for(lambda: reg.state is RegState.REGISTERED, timeout=3)
        assert registrar.expires == ["300", "300"]  # challenged, then answered
    finally:
        await stopped(registrar, ua, reg)
    assert registrar.expires[-2:] == ["0", "0"]  # the removal is challenged and answered too
    assert registrar.requests[-1][1].headers.get("Authorization")
    assert reg.state is RegState.STOPPED and reg.last_status == 200
    assert ua.config.trunks is not None and ua.config.trunks.for_source("127.0.0.1") == []
