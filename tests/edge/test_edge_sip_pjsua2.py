"""A real third-party SIP stack (PJSIP through pjsua2, null sound device) calls our UAS over UDP.

pjsua2 runs in a child process: it has its own event handling and aborts the process if its objects
outlive ``libDestroy()``, which must not take the test runner down with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from phoneagent.edge.sip import (
    Dialog,
    DialogHandlers,
    DigestServer,
    IncomingCall,
    UAConfig,
    UserAgent,
    answer,
    negotiated,
    offer,
)
from support.pjsua2 import (
    NEEDS_PJSUA2,
    PJSUA2_DIGESTS,
    PJSUA2_ENDPOINT,
    PJSUA2_FINISH,
    PJSUA2_HANGUP_ALL,
    PJSUA2_HOLD,
    PJSUA2_MEDIA_CALL,
    PJSUA2_PUMP,
    PJSUA2_START,
    peer_port,
    peer_result,
    start_peer,
)

pytestmark = [
    pytest.mark.slow,
    NEEDS_PJSUA2,
]

PEER = (
    r"""
import json, sys, time
import pjsua2 as pj
"""
    + PJSUA2_DIGESTS
    + r"""
target, mode, user, password, algorithm = sys.argv[1:6]
result = {"states": [], "status": 0, "media": False}
"""
    + PJSUA2_ENDPOINT
    + r"""tcfg = pj.TransportConfig()
tcfg.boundAddress = "127.0.0.1"
tcfg.port = 0
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcfg)
"""
    + PJSUA2_START
    + PJSUA2_MEDIA_CALL
    + r"""

acfg = pj.AccountConfig()
acfg.idUri = "sip:pjsua@127.0.0.1"
if user:
    cred = pj.AuthCredInfo("digest", "*", user, 0, password)
    # pjsip 2.15 leaves the algorithm unset unless told (fixed upstream later).
    cred.algoType = {"MD5": pj.PJSIP_AUTH_ALGORITHM_MD5, "SHA-256": pj.PJSIP_AUTH_ALGORITHM_SHA256}[algorithm]
    acfg.sipConfig.authCreds.append(cred)
acc = pj.Account()
acc.create(acfg)
call = Call(acc)
call.makeCall(target, pj.CallOpParam(True))
"""
    + PJSUA2_PUMP
    + PJSUA2_HOLD
    + r"""
hold_then_hang_up(call, 0.3 if mode == "peer_hangs_up" else None)
del call
"""
    + PJSUA2_FINISH
)


ANSWERER = (
    r"""
import json, select, sys, time
import pjsua2 as pj
"""
    + PJSUA2_DIGESTS
    + r"""result = {"calls": [], "transfers": []}
"""
    + PJSUA2_ENDPOINT
    + r"""tcfg = pj.TransportConfig()
tcfg.boundAddress = "127.0.0.1"
tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
"""
    + PJSUA2_START
    + r"""calls = []


class Call(pj.Call):
    def __init__(self, acc, call_id=pj.PJSUA_INVALID_ID):
        super().__init__(acc, call_id)
        self.states = []
        result["calls"].append(self.states)

    def onCallState(self, prm):
        info = self.getInfo()
        self.states.append(info.stateText)

    def onCallTransferRequest(self, prm):
        result["transfers"].append(prm.dstUri)
        new = Call(acc)
        calls.append(new)
        prm.newCall = new


class Account(pj.Account):
    def onIncomingCall(self, prm):
        call = Call(self, prm.callId)
        calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


acfg = pj.AccountConfig()
acfg.idUri = "sip:pjsua@127.0.0.1"
acc = Account()
acc.create(acfg)
print("PORT " + ep.transportGetInfo(tid).localName.rsplit(":", 1)[1], flush=True)
end = time.time() + 20
while time.time() < end:
    ep.libHandleEvents(10)
    if select.select([sys.stdin], [], [], 0)[0]:
        break
"""
    + PJSUA2_HANGUP_ALL
    + "del calls[:]\n"
    + PJSUA2_FINISH
)


async def run_peer(
    target: str, mode: str, user: str = "", password: str = "", algorithm: str = "MD5"
) -> dict:
    proc = await start_peer(PEER, target, mode, user, password, algorithm)
    return await peer_result(proc, 30, "pjsua2 peer")


class Agent:
    def __init__(self, hang_up: bool) -> None:
        self.hang_up = hang_up
        self.dialogs: asyncio.Queue[Dialog] = asyncio.Queue()
        self.peer_bye = asyncio.Event()

    async def __call__(self, call: IncomingCall) -> None:
        await call.ring()
        assert call.remote_sdp is not None
        local = answer(call.remote_sdp, ("PCMU", "PCMA"), address="127.0.0.1", port=40100)
        dialog = await call.answer(local, DialogHandlers(on_bye=lambda d: self.peer_bye.set()))
        self.dialogs.put_nowait(dialog)
        if self.hang_up:
            await asyncio.wait_for(dialog.confirmed.wait(), 5)
            await dialog.bye()


@pytest.fixture
async def agent_ua(request: pytest.FixtureRequest) -> AsyncIterator[tuple[UserAgent, Agent]]:
    hang_up, algorithm = request.param
    agent = Agent(hang_up)
    server = DigestServer("agent.test", {"pjuser": "pjpass"}, algorithm=algorithm) if algorithm else None
    ua = UserAgent(UAConfig(auth=server, transports=("udp", "tcp")), agent)
    await ua.start()
    yield ua, agent
    await ua.close()


def uri(ua: UserAgent, transport: str = "udp") -> str:
    host, port = ua.local_address()
    return f"sip:agent@{host}:{port}" + (";transport=tcp" if transport == "tcp" else "")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("agent_ua", [(False, "")], indirect=True)
async def test_pjsua2_calls_and_hangs_up(agent_ua, transport: str) -> None:  # type: ignore[no-untyped-def]
    ua, agent = agent_ua
    result = await run_peer(uri(ua, transport), "peer_hangs_up")
    assert "CONFIRMED" in result["states"] and result["states"][-1] == "DISCONNECTED"
    assert result["media"]
    dialog = agent.dialogs.get_nowait()
    await asyncio.wait_for(agent.peer_bye.wait(), 5)
    assert dialog.peer.transport == transport.upper()
    assert dialog.remote_sdp is not None
    assert negotiated(dialog.remote_sdp).codec in ("PCMU", "PCMA")


@pytest.mark.parametrize("agent_ua", [(True, "MD5"), (True, "SHA-256")], indirect=True)
async def test_pjsua2_digest_call_and_we_hang_up(agent_ua) -> None:  # type: ignore[no-untyped-def]
    ua, agent = agent_ua
    result = await run_peer(uri(ua), "agent_hangs_up", "pjuser", "pjpass", ua.config.auth.algorithm)
    assert "CONFIRMED" in result["states"] and result["states"][-1] == "DISCONNECTED"
    dialog = agent.dialogs.get_nowait()
    assert dialog.end_reason == "local_bye"
    assert ua.active_calls == 0


@pytest.mark.parametrize("agent_ua", [(False, "MD5")], indirect=True)
async def test_pjsua2_wrong_password_is_refused(agent_ua) -> None:  # type: ignore[no-untyped-def]
    ua, agent = agent_ua
    result = await run_peer(uri(ua), "peer_hangs_up", "pjuser", "wrong")
    assert "CONFIRMED" not in result["states"] and result["status"] in (401, 403)
    assert agent.dialogs.empty()


async def test_our_uac_calls_pjsua2_and_transfers_it_to_us() -> None:
    """Outbound call to a real peer, then a blind transfer: pjsua2 calls the REFER target (our UAS)."""
    agent = Agent(hang_up=False)
    human = UserAgent(UAConfig(user="human"), agent)
    caller = UserAgent(UAConfig(user="agent"))
    await human.start()
    await caller.start()
    proc = await start_peer(ANSWERER, stdin=True)
    try:
        pjsua_port = await peer_port(proc, 10, "pjsua2 peer")
        progress: list[int] = []
        dialog = await asyncio.wait_for(
            caller.call(
                f"sip:pjsua@127.0.0.1:{pjsua_port}",
                offer("127.0.0.1", 40200),
                on_progress=lambda status, sdp: progress.append(status),
            ),
            10,
        )
        assert 180 in progress and dialog.remote_sdp is not None
        assert negotiated(dialog.remote_sdp, dialog.local_sdp).codec in ("PCMU", "PCMA")
        host, port = human.local_address()
        status = await asyncio.wait_for(dialog.refer(f"sip:human@{host}:{port}"), 15)
        assert status == 200
        transferred = await asyncio.wait_for(agent.dialogs.get(), 5)
        assert transferred.remote.uri.user == "pjsua"
        await dialog.bye()
        result = await peer_result(proc, 15, "pjsua2 peer", stdin=b"quit\n")
        assert result["transfers"] and "human@" in result["transfers"][0]
        assert all("CONFIRMED" in states for states in result["calls"])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await caller.close()
        await human.close()
