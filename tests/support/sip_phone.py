"""A SIP phone for the edge's call tests (our own user agent and an RTP session paced every 20 ms),
the test signals it sends (tones, speech-like harmonics) and checks on what it hears (or a
third-party phone recorded), and the bus side of a call (collect a subject, send the agent's
speech chunks)."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from phoneagent.edge.media.pacer import Pacer
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.sip import Dialog, DialogHandlers, IncomingCall, UAConfig, UserAgent, negotiated, offer
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2

from support.edge import Edge

HOST = "127.0.0.1"


def tone(freq: float, samples: int, start: int = 0, amp: float = 8000.0) -> np.ndarray:
    t = (np.arange(samples) + start) / 8000.0
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def voice(samples: int, start: int = 0) -> np.ndarray:
    """Speech-like: harmonics of 140 Hz up to 1.4 kHz."""
    t = (np.arange(samples) + start) / 8000.0
    sig = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 11))
    return (4000 * sig).astype(np.int16)


def band_energy(pcm: np.ndarray, rate: int, freq: float) -> float:
    """Share of the signal's energy within 50 Hz of ``freq``."""
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    bins = np.fft.rfftfreq(len(pcm), 1 / rate)
    total = spec.sum() or 1.0
    return float(spec[np.abs(bins - freq) < 50].sum() / total)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A WAV's first channel (16-bit) and its rate."""
    with wave.open(str(path), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return pcm.reshape(-1, w.getnchannels())[:, 0], w.getframerate()


def joined_pcm(frames: list[media_pb2.AudioFrame]) -> np.ndarray:
    """The PCM of audio frames (as the edge publishes them to ASR), one after the other."""
    return np.concatenate([np.frombuffer(f.pcm, "<i2") for f in frames])


def loud_frames(pcm: np.ndarray, rate: int) -> list[np.ndarray]:
    """The 20 ms frames of ``pcm`` that carry a tone (peak above 1000)."""
    frame = rate // 50
    return [f for i in range(0, len(pcm) - frame, frame) if np.abs(f := pcm[i : i + frame]).max() > 1000]


def assert_tone(pcm: np.ndarray, rate: int, freq: float, skip: int = 5) -> None:
    """At least a second of loud 20 ms frames, the fifty after the first ``skip`` with their
    energy in ``freq``'s band."""
    loud = loud_frames(pcm, rate)
    assert len(loud) >= 50, len(loud)
    assert band_energy(np.concatenate(loud[skip : skip + 50]), rate, freq) > 0.8


class Peer:
    """A SIP phone: our user agent plus an RTP session driven every 20 ms."""

    def __init__(self, ua: UserAgent, rtp: RtpSession) -> None:
        self.ua, self.rtp = ua, rtp
        self.source: Callable[[int], np.ndarray] = lambda n: (
            np.random.default_rng().normal(0, 30, 160).astype(np.int16)
        )
        self.received: list[tuple[float, np.ndarray]] = []
        self.bye = asyncio.Event()
        self.dialog: Dialog | None = None
        self._task: asyncio.Task[None] | None = None

    def handlers(self) -> DialogHandlers:
        return DialogHandlers(on_bye=lambda _: self.bye.set())

    def media(self, dialog: Dialog, local_sdp: Any) -> None:
        assert dialog.remote_sdp is not None
        self.dialog = dialog
        self.rtp.start(negotiated(dialog.remote_sdp, local_sdp))
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        pacer, n = Pacer(0.02), 0
        while True:
            await pacer.next_tick()
            self.rtp.send_audio(self.source(n), True)
            n += 1
            frame = self.rtp.pull_frame()
            if frame is not None:
                self.received.append((time.monotonic(), frame))

    def heard(self, freq: float, since: float = 0.0) -> list[float]:
        """Arrival times of received frames carrying ``freq``."""
        return [
            t
            for t, f in self.received
            if t >= since and np.abs(f).max() > 1000 and band_energy(f, 8000, freq) > 0.5
        ]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.rtp.close()
        await self.ua.close()


async def new_peer(on_call: Callable[[IncomingCall], Any] | None = None) -> Peer:
    ua = UserAgent(UAConfig(host=HOST, port=0, user="phone"), on_incoming_call=on_call)
    await ua.start()
    return Peer(ua, await RtpSession.open(HOST, 42000, 42999))


async def dial_edge(edge: Edge, user: str = "+14155550134") -> tuple[Peer, str]:
    peer = await new_peer()
    local = offer(HOST, peer.rtp.port)
    before = {s.meta.call_id for s in edge.lifecycle("started")}
    dialog = await peer.ua.call(f"sip:{user}@{HOST}:{edge.port}", local, handlers=peer.handlers())
    peer.media(dialog, local)
    started = [s for s in edge.lifecycle("started") if s.meta.call_id not in before]
    assert len(started) == 1 and started[0].direction == call_pb2.DIRECTION_INBOUND
    assert started[0].sample_rate == 16000 and started[0].codec == "PCMU"
    return peer, started[0].meta.call_id


async def collect(bus: Bus, subject: str, msg_type: Any, lane: Lane = Lane.DATA) -> list[Any]:
    out: list[Any] = []

    async def handler(m: Any, _: Delivery) -> None:
        out.append(m)

    await bus.subscribe(subject, msg_type, handler, lane=lane, max_pending=5000)
    return out


def kinds(events: list[control_pb2.ControlEvent], kind: str) -> list[Any]:
    return [getattr(e, kind) for e in events if e.WhichOneof("kind") == kind]


async def speak(bus: Bus, call_id: str, frames: int, gen: int = 1, rate: int = 8000) -> None:
    """``frames`` 20 ms chunks of a 1 kHz tone from the agent, at the call's playout ``rate``."""
    n = rate // 50
    for i in range(frames):
        t = (np.arange(n) + i * n) / rate
        chunk = media_pb2.SpeechChunk(
            meta=common_pb2.EventMeta(call_id=call_id, generation_id=gen),
            sequence=i,
            pcm=(8000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2").tobytes(),
            sample_rate=rate,
            last_in_generation=i == frames - 1,
        )
        await bus.publish(subjects.speech(call_id), chunk)
