"""PA_WEB_CODECS decides the codec of a browser call: an aiortc browser that offers every codec
it has (opus, G722, PCMU, PCMA) gets an answer with only the configured ones and talks both ways
over the first of them; a browser with nothing in common is refused with a 400."""

from __future__ import annotations

import re

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.v1 import media_pb2
from support.common import wait_for
from support.webrtc_peer import AUTH, agent_speech, browser_peer, gateway_on, offer


def answer_codecs(sdp: str) -> list[str]:
    """Codec names of the audio m-line, in its order."""
    m = re.search(r"^m=audio \d+ \S+ ([\d ]+)", sdp, re.MULTILINE)
    assert m, sdp
    names = dict(re.findall(r"^a=rtpmap:(\d+) ([A-Za-z0-9]+)/", sdp, re.MULTILINE))
    return [names[pt] for pt in m.group(1).split()]


@pytest.mark.parametrize(
    ("codecs", "expected", "rate"),
    [(["PCMU"], ["PCMU"], 8000), (["opus"], ["opus"], 48000), (["PCMU", "opus"], ["PCMU", "opus"], 8000)],
)
async def test_the_configured_codec_carries_audio_both_ways(
    bus: Bus, codecs: list[str], expected: list[str], rate: int
) -> None:
    async with gateway_on(bus, codecs=codecs) as (gw, base):
        pc, heard = browser_peer()
        async with aiohttp.ClientSession() as http:
            answer = await offer(http, base, pc)
        call_id = answer["call_id"]
        assert answer_codecs(answer["sdp"]) == expected  # no G722, no PCMA, nothing unconfigured
        call = gw.calls[call_id]
        assert call.codec == expected[0]
        caller: list[media_pb2.AudioFrame] = []

        async def keep(m: media_pb2.AudioFrame, _: Delivery) -> None:
            caller.append(m)

        await bus.subscribe(subjects.audio_in(call_id), media_pb2.AudioFrame, keep)
        # Browser -> agent: the tone arrives decoded from the negotiated codec, at 16 kHz on the bus.
        await wait_for(lambda: len(caller) > 20, timeout=15)
        assert call.transport.caller_rate == rate
        assert np.abs(np.frombuffer(caller[-1].pcm, "<i2")).max() > 2000
        # Agent -> browser: TTS speech is heard, decoded at the codec's rate.
        await agent_speech(bus, call_id)
        await wait_for(lambda: heard.loud() > 20, timeout=10)
        assert set(heard.rates) == {rate}
        await pc.close()
        await heard.close()
        await wait_for(lambda: gw.active_calls == 0, timeout=10)


async def test_a_browser_with_no_common_codec_is_refused(bus: Bus) -> None:
    async with gateway_on(bus, codecs=["PCMU"]) as (gw, base):
        async with aiohttp.ClientSession() as http:
            for offered in (["audio/opus"], ["audio/G722", "audio/PCMA"]):
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                tr = pc.addTransceiver("audio")
                caps = RTCRtpSender.getCapabilities("audio").codecs
                tr.setCodecPreferences([c for c in caps if c.mimeType in offered])
                await pc.setLocalDescription(await pc.createOffer())
                body = {"type": "offer", "sdp": pc.localDescription.sdp}
                async with http.post(f"{base}/api/offer", json=body, headers=AUTH) as r:
                    assert r.status == 400
                    assert "no common audio codec" in (await r.json())["error"]
                await pc.close()
        assert gw.active_calls == 0
