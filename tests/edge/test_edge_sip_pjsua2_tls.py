"""SIP over TLS with pjsua2 (PJSIP, a third-party stack) on the other side, certificates made for
the test: pjsua2 calls our user agent and checks our certificate against the test's CA (and
refuses one it cannot verify); our user agent calls pjsua2 at a ``sips:`` URI and checks its
certificate. Media is plain RTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from phoneagent.edge.sip import DialogHandlers, IncomingCall, Timers, UAConfig, UserAgent, answer, offer
from phoneagent.edge.sip.sockets import TlsConfig
from support.pjsua2 import (
    NEEDS_PJSUA2,
    PJSUA2_ENDPOINT,
    PJSUA2_FINISH,
    PJSUA2_HOLD,
    PJSUA2_MEDIA_CALL,
    PJSUA2_PUMP,
    PJSUA2_START,
    peer_port,
    peer_result,
    start_peer,
)
from support.tls import CertFiles, make_certs

pytestmark = [pytest.mark.slow, NEEDS_PJSUA2]

PEER = (
    r"""
import json, select, sys, time
import pjsua2 as pj

mode, target, ca, cert, key = sys.argv[1:6]
result = {"states": [], "status": 0, "media": False, "incoming": 0}
"""
    + PJSUA2_ENDPOINT
    + r"""tcfg = pj.TransportConfig()
tcfg.boundAddress = "127.0.0.1"
tcfg.port = 0
tcfg.tlsConfig.CaListFile = ca
tcfg.tlsConfig.certFile = cert
tcfg.tlsConfig.privKeyFile = key
tcfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
tcfg.tlsConfig.verifyServer = True
tid = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
"""
    + PJSUA2_START
    + "calls = []\n"
    + PJSUA2_MEDIA_CALL
    + r"""

class Account(pj.Account):
    def onIncomingCall(self, prm):
        result["incoming"] += 1
        call = Call(self, prm.callId)
        calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


acfg = pj.AccountConfig()
acfg.idUri = "sip:pjsua@127.0.0.1"
acc = Account()
acc.create(acfg)
"""
    + PJSUA2_PUMP
    + PJSUA2_HOLD
    + r"""
if mode == "call":
    call = Call(acc)
    calls.append(call)
    call.makeCall(target, pj.CallOpParam(True))
    hold_then_hang_up(call, 0.3)
    del call
else:
    print("PORT " + ep.transportGetInfo(tid).localName.rsplit(":", 1)[1], flush=True)
    end = time.time() + 20
    while time.time() < end and "DISCONNECTED" not in result["states"]:
        ep.libHandleEvents(10)
del calls[:]
"""
    + PJSUA2_FINISH
)


async def tls_agent(certs: CertFiles, on_call: object = None) -> UserAgent:
    tls = TlsConfig(str(certs.cert), str(certs.key), str(certs.ca))
    ua = UserAgent(UAConfig(transports=("tls",), tls=tls, timers=Timers(t1=0.05)), on_call)  # type: ignore[arg-type]
    await ua.start()
    return ua


class Agent:
    def __init__(self) -> None:
        self.calls: asyncio.Queue[IncomingCall] = asyncio.Queue()
        self.peer_bye = asyncio.Event()

    async def __call__(self, call: IncomingCall) -> None:
        assert call.remote_sdp is not None
        local = answer(call.remote_sdp, ("PCMU", "PCMA"), address="127.0.0.1", port=40100)
        await call.answer(local, DialogHandlers(on_bye=lambda _: self.peer_bye.set()))
        self.calls.put_nowait(call)


async def call_agent(ua: UserAgent, peer: CertFiles) -> dict:
    """pjsua2 (with ``peer``'s CA and certificate) calls ``ua`` over TLS and hangs up; its result."""
    port = ua.local_address("TLS")[1]
    proc = await start_peer(
        PEER, "call", f"sip:agent@127.0.0.1:{port};transport=tls", str(peer.ca), str(peer.cert), str(peer.key)
    )
    return await peer_result(proc, 30, "pjsua2 tls caller")


async def test_pjsua2_calls_over_tls_and_verifies_our_certificate(certs: CertFiles) -> None:
    agent = Agent()
    ua = await tls_agent(certs, agent)
    try:
        result = await call_agent(ua, certs)
        assert "CONFIRMED" in result["states"] and result["states"][-1] == "DISCONNECTED", result
        assert result["media"]
        call = agent.calls.get_nowait()
        assert call.peer.transport == "TLS"
        await asyncio.wait_for(agent.peer_bye.wait(), 5)  # pjsua2's BYE, over TLS
    finally:
        await ua.close()


async def test_pjsua2_refuses_a_certificate_from_another_ca(certs: CertFiles, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")
    agent = Agent()
    ua = await tls_agent(certs, agent)
    try:
        result = await call_agent(ua, other)
        assert "CONFIRMED" not in result["states"], result
        assert agent.calls.empty()
    finally:
        await ua.close()


async def test_we_call_pjsua2_at_a_sips_uri(certs: CertFiles) -> None:
    ua = await tls_agent(certs)
    proc = await start_peer(PEER, "answer", "", str(certs.ca), str(certs.cert), str(certs.key))
    try:
        port = await peer_port(proc, 10, "pjsua2 tls answerer")
        dialog = await asyncio.wait_for(
            ua.call(f"sips:pjsua@127.0.0.1:{port}", offer("127.0.0.1", 40000)), 10
        )
        assert dialog.peer.transport == "TLS"
        await asyncio.wait_for(dialog.confirmed.wait(), 5)
        await dialog.bye()
        result = await peer_result(proc, 30, "pjsua2 tls answerer")
        assert result["incoming"] == 1 and "CONFIRMED" in result["states"], result
        assert result["states"][-1] == "DISCONNECTED"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await ua.close()
