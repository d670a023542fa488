"""The WebRTC gateway against a real aiortc peer (the browser side in Python) and a real
nats-server: signalling, token check, audio both ways, DTMF, live page events, hang-up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from phoneagent.edge.webrtc.gateway import WebRtcGateway
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2, speech_pb2
from support.common import wait_for
from support.webrtc_peer import TOKEN, browser_peer, gateway_on, offer


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[tuple[WebRtcGateway, str]]:
    async with gateway_on(bus) as gw:
        yield gw


async def test_token_and_bad_offers_are_refused(gateway: tuple[WebRtcGateway, str]) -> None:
    gw, base = gateway
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/config") as r:
            assert (await r.json()) == {"token_required": True}
        async with http.get(f"{base}/") as r:
            assert r.status == 200 and "<html" in (await r.text()).lower()
        async with http.post(f"{base}/api/offer", json={"type": "offer", "sdp": "v=0"}) as r:
            assert r.status == 401
        bad = {"Authorization": "Bearer wrong"}
        async with http.post(f"{base}/api/offer", json={"type": "offer", "sdp": "v=0"}, headers=bad) as r:
            assert r.status == 401
        async with http.post(f"{base}/api/offer", json={"type": "offer", "sdp": "v=0"}, headers=auth) as r:
            assert r.status == 400 and "audio" in (await r.json())["error"]
        async with http.post(f"{base}/api/offer", data=b"\xff not json", headers=auth) as r:
            assert r.status == 400
        async with http.post(f"{base}/api/hangup", json={"call_id": "nope"}, headers=auth) as r:
            assert r.status == 404
        async with http.get(f"{base}/api/events?call_id=nope&key=x") as r:
            assert r.status == 403
    assert gw.active_calls == 0


async def test_a_browser_call_end_to_end(gateway: tuple[WebRtcGateway, str], bus: Bus) -> None:
    gw, base = gateway
    pc, heard = browser_peer()
    channel = pc.createDataChannel("control")
    async with aiohttp.ClientSession() as http:
        answer = await offer(http, base, pc)
        call_id = answer["call_id"]
        assert "opus" in answer["sdp"].lower()
        got: dict[str, list[Any]] = {"audio": [], "ctl": [], "life": []}

        async def keep(kind: str, m: Any, _: Delivery) -> None:
            got[kind].append(m)

        await bus.subscribe(
            subjects.audio_in(call_id), media_pb2.AudioFrame, lambda m, d: keep("audio", m, d)
        )
        await bus.subscribe(
            subjects.control(call_id),
            control_pb2.ControlEvent,
            lambda m, d: keep("ctl", m, d),
            lane=Lane.CONTROL,
        )
        await bus.subscribe(subjects.lifecycle(call_id), call_pb2.CallEvent, lambda m, d: keep("life", m, d))
        ws = await http.ws_connect(f"{base}/api/events?call_id={call_id}&key={answer['events_key']}")

        # Caller audio reaches ASR's subject at 16 kHz, carrying the tone.
        await wait_for(lambda: len(got["audio"]) > 20, timeout=15)
        pcm = np.frombuffer(got["audio"][-1].pcm, "<i2")
        assert got["audio"][-1].sample_rate == 16000 and np.abs(pcm).max() > 2000

        # Agent speech (16 kHz chunks from TTS) reaches the browser.
        t = np.arange(16000) / 16000
        tone = (6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
        for seq, start in enumerate(range(0, len(tone), 320)):
            await bus.publish(
                subjects.speech(call_id),
                media_pb2.SpeechChunk(
                    meta=common_pb2.EventMeta(call_id=call_id, generation_id=1),
                    sequence=seq,
                    pcm=tone[start : start + 320].tobytes(),
                    sample_rate=16000,
                    last_in_generation=start + 320 >= len(tone),
                ),
            )
        await bus.publish(
            subjects.say(call_id),
            speech_pb2.AgentText(
                meta=common_pb2.EventMeta(call_id=call_id, generation_id=1), text="Hello there.", final=True
            ),
        )
        await wait_for(lambda: heard.loud() > 20, timeout=10)

        # DTMF from the page's data channel becomes a control event.
        await wait_for(lambda: channel.readyState == "open", timeout=5)
        channel.send(json.dumps({"dtmf": "5"}))
        channel.send("not json")
        await wait_for(lambda: [e for e in got["ctl"] if e.WhichOneof("kind") == "dtmf"], timeout=5)
        assert [e.dtmf.digit for e in got["ctl"] if e.WhichOneof("kind") == "dtmf"] == ["5"]

        # The page's live feed saw the agent's words and the speaking state.
        events: list[dict[str, Any]] = []
        while not any(e.get("type") == "agent" for e in events) or not any(
            e.get("state") == "speaking" for e in events
        ):
            events.append(await asyncio.wait_for(ws.receive_json(), 5))
        assert any(e.get("text") == "Hello there." for e in events)

        async with http.post(
            f"{base}/api/hangup", json={"call_id": call_id}, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as r:
            assert r.status == 200
        await wait_for(lambda: [e for e in got["life"] if e.WhichOneof("event") == "ended"], timeout=5)
        ended = [e.ended for e in got["life"] if e.WhichOneof("event") == "ended"]
        assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
        await wait_for(lambda: gw.active_calls == 0, timeout=5)
        await ws.close()
    await pc.close()
    await heard.close()
