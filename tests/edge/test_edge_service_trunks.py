"""The edge service with a trunk allow-list, an INVITE rate limit and a short RTP-inactivity
timeout: real SIP and RTP on loopback (each peer on its own 127.0.0.x address) and a real bus."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import CallFailed, UAConfig, UserAgent, offer
from phoneagent.edge.sip.message import SipResponse
from phoneagent.runtime import subjects
from phoneagent.runtime.metrics import SIP_REFUSED
from phoneagent.runtime.settings import load
from phoneagent.v1 import call_pb2, media_pb2
from support.common import wait_for
from support.edge import Edge, running_edge
from support.sip_phone import HOST, collect, dial_edge
from support.sip_raw import raw_phone

pytestmark = pytest.mark.slow

RTP_TIMEOUT_S = 1.0
TRUNKS = [{"name": "lab", "sources": ["127.0.0.1/32", "127.0.0.3/32"]}]


@pytest.fixture(scope="module")
async def edge(nats_url: str) -> AsyncIterator[Edge]:
    settings = load(
        EdgeSettings,
        sip_port=0,
        rtp_port_min=43000,
        rtp_port_max=43999,
        inbound_trunks=json.dumps(TRUNKS),
        invite_rate=0.2,
        invite_burst=3,
        rtp_timeout_s=RTP_TIMEOUT_S,
        max_call_duration_s=30.0,
    )
    async with running_edge(nats_url, settings, tag="trunks") as edge:
        yield edge


def refused(reason: str) -> float:
    return SIP_REFUSED.labels(reason=reason)._value.get()


async def test_a_caller_outside_the_allow_list_gets_403_and_no_call(edge: Edge) -> None:
    ua = UserAgent(UAConfig(host="127.0.0.2", port=0, user="stranger"))
    await ua.start()
    rtp = await RtpSession.open("127.0.0.2", 43000, 43999)
    events_before, refused_before = len(edge.events), refused("unknown_source")
    try:
        with pytest.raises(CallFailed) as err:
            await ua.call(f"sip:+14155550134@{HOST}:{edge.port}", offer("127.0.0.2", rtp.port))
        assert err.value.status == 403
        assert refused("unknown_source") == refused_before + 1
        assert edge.svc.calls == {} and len(edge.events) == events_before  # no call state, no bus traffic
    finally:
        rtp.close()
        await ua.close()
    # A listed source still calls in.
    peer, call_id = await dial_edge(edge)
    try:
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
    finally:
        assert peer.dialog is not None
        await peer.dialog.bye()
        await peer.close()
    await wait_for(lambda: call_id not in edge.svc.calls, timeout=5)


async def test_an_invite_flood_from_one_source_does_not_stop_another_sources_call(edge: Edge) -> None:
    flood = await raw_phone("127.0.0.3")
    assert edge.svc.ua is not None
    started_before = len(edge.lifecycle("started"))
    for i in range(15):  # offerless INVITEs: those let through are refused 488 by the edge
        flood.invite(edge.svc.ua, f"flood-{i}")
    limited: dict[str, SipResponse] = {}
    while len(limited) < 12:  # everything beyond the burst of 3 (503s repeat until ACKed)
        resp = await flood.final_with(503)
        assert int(resp.headers.get("Retry-After") or 0) >= 1
        limited[resp.call_id] = resp

    peer, call_id = await dial_edge(edge)  # meanwhile, the listed caller on 127.0.0.1
    try:
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        assert len(edge.lifecycle("started")) == started_before + 1  # the flood started no call
    finally:
        assert peer.dialog is not None
        await peer.dialog.bye()
        await peer.close()
        assert flood.sock is not None
        flood.sock.close()
    await wait_for(lambda: call_id not in edge.svc.calls, timeout=5)


async def test_a_peer_that_stops_sending_rtp_is_hung_up(edge: Edge) -> None:
    peer, call_id = await dial_edge(edge)
    try:
        audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
        # While RTP flows the call outlasts the timeout (2 s of caller audio reach ASR).
        await wait_for(lambda: len(audio) >= 100, timeout=10)
        assert not edge.lifecycle("ended", call_id)

        assert peer._task is not None
        peer._task.cancel()  # the phone goes silent (dead, or gone without a BYE)
        await asyncio.gather(peer._task, return_exceptions=True)
        await asyncio.wait_for(peer.bye.wait(), RTP_TIMEOUT_S + 5)  # the edge sent BYE
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_MEDIA_TIMEOUT
        await wait_for(lambda: call_id not in edge.svc.calls, timeout=5)
    finally:
        await peer.close()
