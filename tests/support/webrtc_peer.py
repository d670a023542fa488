"""The browser side of a WebRTC call in Python (aiortc): a paced microphone, a listener that
keeps what the agent's audio sounded like, and the signalling round trip. Shared by the
gateway's tests."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame
from phoneagent.edge.callflow import EdgeCallConfig
from phoneagent.edge.webrtc.gateway import GATEWAY_KEY, WebRtcGateway, run_gateway
from phoneagent.edge.webrtc.settings import WebRtcSettings
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import common_pb2, media_pb2

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ToneTrack(MediaStreamTrack):  # type: ignore[misc]
    """A paced 48 kHz 440 Hz tone: the caller's microphone. ``muted`` sends silence."""

    kind = "audio"

    def __init__(self, muted: bool = False) -> None:
        super().__init__()
        self.pts = 0
        self.start = 0.0
        self.muted = muted

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.pts == 0:
            self.start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self.start + self.pts / 48000 - time.monotonic()))
        t = (np.arange(960) + self.pts) / 48000
        level = 0 if self.muted else 8000
        pcm = (level * np.sin(2 * np.pi * 440 * t)).astype("<i2")
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate, frame.time_base, frame.pts = 48000, fractions.Fraction(1, 48000), self.pts
        self.pts += 960
        return frame


@dataclass
class Heard:
    """What the browser's speaker received: RMS level, decoded rate and arrival time per frame."""

    levels: list[float] = field(default_factory=list)
    rates: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def loud(self, above: float = 1000.0) -> int:
        return sum(1 for e in self.levels if e > above)

    def loud_times(self, above: float = 1000.0, since: float = 0.0) -> list[float]:
        """Arrival times (monotonic) of frames louder than ``above``, from ``since`` on."""
        return [t for t, e in zip(self.times, self.levels, strict=True) if e > above and t >= since]

    async def _listen(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.times.append(time.monotonic())
            self.rates.append(int(frame.sample_rate))
            self.levels.append(float(np.sqrt(np.mean(frame.to_ndarray().astype(np.float64) ** 2))))

    def attach(self, pc: RTCPeerConnection) -> None:
        pc.on("track", lambda track: self.tasks.append(asyncio.create_task(self._listen(track))))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def browser_peer(mic: MediaStreamTrack | None = None) -> tuple[RTCPeerConnection, Heard]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(mic if mic is not None else ToneTrack())
    heard = Heard()
    heard.attach(pc)
    return pc, heard


async def offer(http: aiohttp.ClientSession, base: str, pc: RTCPeerConnection) -> dict[str, Any]:
    """Send ``pc``'s offer to the gateway and apply its answer."""
    await pc.setLocalDescription(await pc.createOffer())
    body = {"type": "offer", "sdp": pc.localDescription.sdp}
    async with http.post(f"{base}/api/offer", json=body, headers=AUTH) as r:
        assert r.status == 200, await r.text()
        answer: dict[str, Any] = await r.json()
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return answer


@asynccontextmanager
async def gateway_on(bus: Bus, **settings: Any) -> AsyncIterator[tuple[WebRtcGateway, str]]:
    """A gateway on a free loopback port with no stage sessions; ``settings`` override defaults."""
    options: dict[str, Any] = {"token": TOKEN, "call_rate": 16000, "port": 0}
    options.update(settings)
    runner, port = await run_gateway(
        bus, "127.0.0.1", 0, WebRtcSettings(**options), EdgeCallConfig(stages=())
    )
    try:
        yield runner.app[GATEWAY_KEY], f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def agent_speech(bus: Bus, call_id: str, seconds: float = 1.0, generation: int = 1) -> None:
    """Agent speech as TTS publishes it: a 300 Hz tone in 20 ms chunks at 16 kHz."""
    t = np.arange(int(16000 * seconds)) / 16000
    tone = (6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
    for seq, start in enumerate(range(0, len(tone), 320)):
        await bus.publish(
            subjects.speech(call_id),
            media_pb2.SpeechChunk(
                meta=common_pb2.EventMeta(call_id=call_id, generation_id=generation),
                sequence=seq,
                pcm=tone[start : start + 320].tobytes(),
                sample_rate=16000,
                last_in_generation=start + 320 >= len(tone),
            ),
        )
