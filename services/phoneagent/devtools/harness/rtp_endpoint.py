"""The simulated caller's media: G.711 RTP out on a 20 ms clock, RTP in through a jitter buffer.

Each tick sends one frame of the caller's script (or background noise / silence), pulls one
frame of the agent's audio from the jitter buffer, and records both, so the two recorded
tracks share one time line. Outgoing packets pass through the :class:`Impairer` (loss and
per-packet delay). Every received agent packet's arrival is noted with a speech flag, which is
what turn taking and the latency numbers are computed from.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from dataclasses import dataclass

import numpy as np

from phoneagent.audio.g711 import codec_for
from phoneagent.devtools.harness.impair import Impairer, dbfs_to_rms
from phoneagent.edge.media.dtmf import dtmf_packets
from phoneagent.edge.media.jitter import JitterBuffer
from phoneagent.edge.media.pacer import Pacer
from phoneagent.edge.media.rtp import RtpError, RtpPacket, parse_rtp, seq_add, ts_add
from phoneagent.edge.sip.sdp import MediaParams
from phoneagent.runtime.tasks import TaskOwner

log = logging.getLogger(__name__)
FRAME = 160  # samples per 20 ms at 8 kHz
SPEECH_DBFS = -45.0  # a received frame louder than this is agent speech


@dataclass(frozen=True, slots=True)
class Arrival:
    mono: float  # loop time
    unix_ns: int
    speech: bool


def is_speech(pcm: np.ndarray) -> bool:
    if not len(pcm):
        return False
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return rms > dbfs_to_rms(SPEECH_DBFS)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: RtpEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.endpoint.on_datagram(data, addr)


class RtpEndpoint:
    def __init__(self, impairer: Impairer, host: str = "127.0.0.1") -> None:
        self.host = host
        self.impairer = impairer
        self.port = 0
        self.params: MediaParams | None = None
        self.arrivals: list[Arrival] = []
        self.caller_track: list[np.ndarray] = []
        self.agent_track: list[np.ndarray] = []
        self.received = 0
        self.malformed = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._script: collections.deque[np.ndarray] = collections.deque()
        self._dtmf: collections.deque[tuple[int, bool, bytes]] = collections.deque()
        self._marks: list[tuple[int, asyncio.Future[tuple[float, int]]]] = []  # (end frame, done)
        self._queued = 0  # script frames ever queued
        self._played = 0  # script frames sent (or discarded by stop_playing)
        self._tasks = TaskOwner("harness-rtp")
        self._jitter: JitterBuffer | None = None
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self.started_mono = 0.0

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(self.host, 0))
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self.port

    def start(self, params: MediaParams) -> None:
        """Begin sending and playing out against the negotiated ``params``."""
        self.params = params
        self._jitter = JitterBuffer(codec_for(params.payload_type))
        self.started_mono = asyncio.get_running_loop().time()
        self._tasks.spawn(self._run(), "rtp-clock")

    async def close(self) -> None:
        await self._tasks.close(timeout=2.0)
        if self._transport is not None:
            self._transport.close()

    # --- what to send ----------------------------------------------------------------------
    def play(self, pcm: np.ndarray) -> asyncio.Future[tuple[float, int]]:
        """Queue ``pcm`` (int16, 8 kHz); the future resolves with (loop time, unix ns) when its
        last frame has been sent: the moment the caller stops speaking."""
        frames = [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]
        if frames and len(frames[-1]) < FRAME:
            frames[-1] = np.pad(frames[-1], (0, FRAME - len(frames[-1])))
        fut: asyncio.Future[tuple[float, int]] = asyncio.get_running_loop().create_future()
        self._script.extend(frames)
        self._queued += len(frames)
        self._marks.append((self._queued, fut))
        return fut

    def stop_playing(self) -> None:
        self._played += len(self._script)
        self._script.clear()
        self._resolve_marks()

    @property
    def speaking(self) -> bool:
        return bool(self._script)

    def send_digits(self, digits: str, duration_ms: int) -> float:
        """Queue RFC 4733 events for ``digits``; returns how long they take to send (s)."""
        if self.params is None or self.params.telephone_event_pt is None:
            raise RtpError("dtmf", "the agent did not accept telephone-event")
        frames = 0
        for digit in digits:
            packets = dtmf_packets(digit, duration_ms)
            for i, p in enumerate(packets):
                self._dtmf.append((i, p.marker, p.payload))
            self._dtmf.extend([(-1, False, b"")] * 3)  # 60 ms gap between digits
            frames += len(packets) + 3
        return frames * 0.02

    # --- the 20 ms clock -------------------------------------------------------------------
    async def _run(self) -> None:
        pacer = Pacer(0.02)
        event_ts = self._ts
        while True:
            await pacer.next_tick()
            if self._dtmf:
                step, marker, payload = self._dtmf.popleft()
                if step == 0:
                    event_ts = self._ts
                if payload:
                    self._send(self.params.telephone_event_pt or 101, payload, marker, event_ts)  # type: ignore[union-attr]
                frame = np.zeros(FRAME, np.int16)
                self.caller_track.append(self.impairer.add_noise(frame))
            else:
                if self._script:
                    frame = self._script.popleft()
                    self._played += 1
                else:
                    frame = np.zeros(FRAME, np.int16)
                frame = self.impairer.add_noise(frame)
                self.caller_track.append(frame)
                codec = self._jitter.codec  # type: ignore[union-attr]
                self._send(codec.payload_type, codec.encode(frame), False, self._ts)
            self._ts = ts_add(self._ts, FRAME)
            self._resolve_marks()
            self.agent_track.append(self._jitter.pull().pcm.copy())  # type: ignore[union-attr]

    def _resolve_marks(self) -> None:
        done = [fut for end, fut in self._marks if end <= self._played]
        if not done:
            return
        self._marks = [(end, fut) for end, fut in self._marks if end > self._played]
        stamp = (asyncio.get_running_loop().time(), time.time_ns())
        for fut in done:
            if not fut.done():
                fut.set_result(stamp)

    def _send(self, pt: int, payload: bytes, marker: bool, timestamp: int) -> None:
        assert self.params is not None and self._transport is not None
        data = RtpPacket(pt, self._seq, timestamp, self._ssrc, payload, marker).to_bytes()
        self._seq = seq_add(self._seq, 1)
        fate = self.impairer.packet()
        if fate.drop:
            return
        addr = (self.params.remote_address, self.params.remote_port)
        if fate.delay_s <= 0:
            self._transport.sendto(data, addr)
        else:
            asyncio.get_running_loop().call_later(fate.delay_s, self._send_late, data, addr)

    def _send_late(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, addr)

    # --- what arrives ----------------------------------------------------------------------
    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._jitter is None:
            return
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.malformed += 1
            return
        if packet.payload_type != self._jitter.codec.payload_type:
            return
        now = asyncio.get_running_loop().time()
        self.received += 1
        self._jitter.push(packet.timestamp, packet.payload, now)
        speech = is_speech(self._jitter.codec.decode(packet.payload))
        self.arrivals.append(Arrival(now, time.time_ns(), speech))

    # --- queries on the arrivals -----------------------------------------------------------
    def last_speech(self) -> Arrival | None:
        for a in reversed(self.arrivals):
            if a.speech:
                return a
        return None

    def first_speech_after(self, mono: float) -> Arrival | None:
        for a in self.arrivals:
            if a.speech and a.mono >= mono:
                return a
        return None

    def speech_stop_after(self, mono: float, gap_s: float = 0.3) -> Arrival | None:
        """The last agent speech packet after ``mono`` before a silence of ``gap_s``: when the
        agent's audio stopped arriving."""
        speech = [a for a in self.arrivals if a.speech and a.mono >= mono]
        for cur, nxt in zip(speech, speech[1:], strict=False):
            if nxt.mono - cur.mono >= gap_s:
                return cur
        return speech[-1] if speech else None
