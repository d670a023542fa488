"""Bad offers get a clear 400 and never hurt the gateway: hand-broken SDPs (aiortc's parser
asserts on many of them), a seeded sweep of random line mutations, bodies that are not JSON
or far too big. Afterwards the same gateway still places a real call with audio."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from phoneagent.edge.webrtc.gateway import WebRtcGateway
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.v1 import media_pb2
from support.common import wait_for
from support.webrtc_peer import AUTH, browser_peer, gateway_on, offer


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[tuple[WebRtcGateway, str]]:
    async with gateway_on(bus) as gw:
        yield gw


async def good_offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio")
    pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def sub(sdp: str, pattern: str, repl: str) -> str:
    """``sdp`` with its first line that matches ``pattern`` (whole line) rewritten."""
    lines = sdp.split("\r\n")
    for i, line in enumerate(lines):
        if re.fullmatch(pattern, line):
            lines[i] = re.sub(pattern, repl, line)
            return "\r\n".join(lines)
    raise AssertionError(f"no line matches {pattern}")


def drop(sdp: str, pattern: str) -> str:
    return "\r\n".join(line for line in sdp.split("\r\n") if not re.fullmatch(pattern, line))


def broken_offers(sdp: str) -> dict[str, str]:
    audio_section = sdp[sdp.index("m=audio") : sdp.index("m=application")]
    return {
        "m=audio with nothing after it": sub(sdp, r"m=audio .*", "m=audio"),
        "m=audio without a protocol": sub(sdp, r"m=audio .*", "m=audio 9"),
        "m=audio port not a number": sub(sdp, r"m=audio \d+ (.*)", r"m=audio port \1"),
        "m=audio without formats": sub(sdp, r"m=audio (\d+) (\S+) .*", r"m=audio \1 \2"),
        "m=audio formats not numbers": sub(sdp, r"m=audio (\d+) (\S+) .*", r"m=audio \1 \2 opus pcmu"),
        "rtpmap without a codec": sub(sdp, r"a=rtpmap:96 .*", "a=rtpmap:96"),
        "no ICE credentials": drop(sdp, r"a=ice-(ufrag|pwd):.*"),
        "no DTLS fingerprint": drop(sdp, r"a=fingerprint:.*"),
        "garbled direction": sub(sdp, r"a=sendrecv", "a=sendregv"),
        "garbled mid": sub(sdp, r"a=mid:0", "a=midE0"),
        "broken candidate": sub(sdp, r"a=candidate:.*", "a=candidate:1 1 udp"),
        "two audio sections": sdp.replace("m=application", audio_section + "m=application", 1),
        "m=audio lists fewer codecs than it maps": sub(sdp, r"m=audio (\d+) (\S+) .*", r"m=audio \1 \2 9 8"),
        "only codecs we never take": drop(
            sub(sdp, r"m=audio (\d+) (\S+) .*", r"m=audio \1 \2 9 8"), r"a=rtpmap:(96|0) .*"
        ),
        "binary junk around m=audio": "\x00\x01v=\xff\r\nm=audio\r\n" + "\x7f" * 300,
        "truncated in the audio section": sdp[: sdp.index("a=rtpmap:96") + 14],
        "bigger than an SDP can be": sdp + ("a=x-pad:" + "p" * 90 + "\r\n") * 1100,
    }


async def post(http: aiohttp.ClientSession, base: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.post(f"{base}/api/offer", headers=AUTH, **kwargs) as r:
        is_json = r.content_type == "application/json"
        return r.status, (await r.json()) if is_json else await r.text()


async def test_broken_offers_get_a_400_and_the_gateway_keeps_serving(
    gateway: tuple[WebRtcGateway, str], bus: Bus
) -> None:
    gw, base = gateway
    sdp = await good_offer()
    async with aiohttp.ClientSession() as http:
        for name, bad in broken_offers(sdp).items():
            status, body = await post(http, base, json={"type": "offer", "sdp": bad})
            assert status == 400, f"{name}: {status} {body}"
            assert isinstance(body, dict) and body["error"], name
            if name == "only codecs we never take":
                assert "no common audio codec" in body["error"]
        # Bodies that are not offers at all.
        for data in (b"\xff not json", b"[1, 2]", b'{"type": "offer", "sdp": 5}', b'{"type": "answer"}'):
            status, body = await post(http, base, data=data)
            assert status == 400, (data, status, body)
        status, _ = await post(http, base, data=b'{"sdp": "' + b"x" * 300_000 + b'"}')
        assert status == 413
        # A seeded sweep of random one-line mutations: each is answered (a harmless change) or
        # refused with a 400, never a server error.
        rnd = random.Random(4)
        lines = sdp.split("\r\n")
        statuses = []
        for _ in range(80):
            mutated = list(lines)
            i = rnd.randrange(len(mutated))
            line = mutated[i]
            cut = rnd.randrange(len(line) + 1)
            mutated[i] = rnd.choice(
                [line[:cut], line[:cut] + chr(rnd.randrange(33, 127)) + line[cut + 1 :], line + " x", ""]
            )
            status, body = await post(http, base, json={"type": "offer", "sdp": "\r\n".join(mutated)})
            assert status in (200, 400), (mutated[i], status, body)
            statuses.append(status)
            if status == 200:
                async with http.post(f"{base}/api/hangup", json={"call_id": body["call_id"]}, headers=AUTH):
                    pass
        assert 400 in statuses
        await wait_for(lambda: gw.active_calls == 0, timeout=10)

        # The same gateway still places a real call: the caller's audio reaches the bus.
        pc, heard = browser_peer()
        answer = await offer(http, base, pc)
        frames: list[media_pb2.AudioFrame] = []

        async def keep(m: media_pb2.AudioFrame, _: Delivery) -> None:
            frames.append(m)

        await bus.subscribe(subjects.audio_in(answer["call_id"]), media_pb2.AudioFrame, keep)
        await wait_for(lambda: len(frames) > 10, timeout=15)
        await pc.close()
        await heard.close()
        await wait_for(lambda: gw.active_calls == 0, timeout=10)
