"""Draining the edge service (a pod stopping) covers browser calls too: new browser calls get a
503, a browser call in progress is hung up when the grace ends, and the service's status counts
browser calls with SIP calls. Real edge service, real aiortc browser, real nats-server."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime.settings import load
from phoneagent.v1 import call_pb2
from support.common import wait_for
from support.edge import running_edge
from support.webrtc_peer import AUTH, TOKEN, browser_peer, offer


async def test_edge_drain_hangs_up_browser_calls_and_refuses_new_ones(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PA_WEB_PORT", "0")
    monkeypatch.setenv("PA_WEB_TOKEN", TOKEN)
    settings = load(EdgeSettings, sip_port=0, rtp_port_min=48200, rtp_port_max=48399, web_enabled=True)
    async with running_edge(nats_url, settings, tag="tdrainweb") as edge:
        base = f"http://127.0.0.1:{edge.svc.web_port}"
        pc, heard = browser_peer()
        late, late_heard = browser_peer()
        try:
            async with aiohttp.ClientSession() as http:
                call_id = (await offer(http, base, pc))["call_id"]
                await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
                assert edge.svc.status()["active_calls"] == 1
                draining = asyncio.create_task(edge.svc.drain_calls(1.0))
                await asyncio.sleep(0.2)
                await late.setLocalDescription(await late.createOffer())
                body = {"type": "offer", "sdp": late.localDescription.sdp}
                async with http.post(f"{base}/api/offer", json=body, headers=AUTH) as r:
                    assert r.status == 503
                await asyncio.wait_for(draining, 10)
            ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
            assert ended[0].reason == call_pb2.END_REASON_AGENT_HANGUP
            await wait_for(lambda: edge.svc.status()["active_calls"] == 0, timeout=5)
        finally:
            for peer, ears in ((pc, heard), (late, late_heard)):
                await peer.close()
                await ears.close()
