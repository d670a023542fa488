"""The call flow's transport for one WebRTC peer connection (aiortc).

Agent audio: :meth:`WebRtcTransport.send_agent_frame` resamples each 20 ms call-flow frame
to 48 kHz and queues it on :class:`AgentAudioTrack`, whose ``recv`` hands aiortc's sender
exact 20 ms ``av.AudioFrame``s with continuous timestamps. The call flow's pacer sets the
pace; the queue is bounded and drops its oldest frame when the sender falls behind.

Caller audio: a consumer task reads the browser's track (48 kHz stereo from Opus, 8 kHz
mono from PCMU), mixes it to mono, resamples it to the call rate and buffers 20 ms frames
for :meth:`WebRtcTransport.pull_caller_frame` (bounded: the oldest audio goes first).
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from phoneagent.audio.resample import StreamResampler
from phoneagent.runtime.modelfiles import MissingModelError

log = logging.getLogger(__name__)

try:
    import av
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingModelError(
        "WebRTC support (aiortc) is not installed", extra="edge", package="aiortc"
    ) from exc

OUT_RATE = 48000
FRAME_MS = 20
TRANSFER_REFUSED = "transfer is not available for browser calls"


class AgentAudioTrack(MediaStreamTrack):  # type: ignore[misc]
    """The agent's voice as an aiortc audio track: 20 ms mono s16 frames from a bounded queue."""

    kind = "audio"

    def __init__(self, rate: int = OUT_RATE, max_frames: int = 10) -> None:
        super().__init__()
        self.rate = rate
        self.samples = rate * FRAME_MS // 1000
        self._frames: collections.deque[np.ndarray] = collections.deque()
        self._max = max_frames
        self._ready = asyncio.Event()
        self._pts = 0
        self.dropped = 0

    def push(self, pcm: np.ndarray) -> None:
        """Queue one frame of exactly ``samples`` int16 samples."""
        if len(pcm) != self.samples:
            raise ValueError(f"agent frame must hold {self.samples} samples")
        if len(self._frames) >= self._max:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(pcm.astype(np.int16, copy=False))
        self._ready.set()

    @property
    def queued(self) -> int:
        return len(self._frames)

    async def recv(self) -> av.AudioFrame:
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        pcm = self._frames.popleft()
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
        frame.planes[0].update(pcm.astype("<i2").tobytes())
        frame.sample_rate = self.rate
        frame.time_base = fractions.Fraction(1, self.rate)
        frame.pts = self._pts
        self._pts += self.samples
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()  # wake a pending recv so it raises


def to_mono_int16(frame: av.AudioFrame) -> np.ndarray:
    """Samples of a decoded frame as mono int16 (packed or planar, s16 or float)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.reshape(channels, -1).T
    else:
        data = data.reshape(-1, channels)
    if np.issubdtype(data.dtype, np.floating):
        data = data * 32767.0
    mono = data.astype(np.float32).mean(axis=1) if channels > 1 else data[:, 0].astype(np.float32)
    return np.clip(mono, -32768, 32767).astype(np.int16)


class WebRtcTransport:
    """:class:`~phoneagent.edge.call_transport.CallTransport` for one peer connection."""

    name = "webrtc"

    def __init__(
        self,
        sample_rate: int,
        *,
        close_peer: Callable[[], Awaitable[None]] | None = None,
        caller_buffer_ms: int = 400,
        agent_buffer_frames: int = 10,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame = sample_rate * FRAME_MS // 1000
        self.track = AgentAudioTrack(OUT_RATE, agent_buffer_frames)
        self._close_peer = close_peer
        self._to_browser = StreamResampler(sample_rate, OUT_RATE)
        self._out = np.zeros(0, np.int16)
        self._from_browser: StreamResampler | None = None
        self._in = np.zeros(0, np.int16)
        self._caller: collections.deque[np.ndarray] = collections.deque(
            maxlen=max(1, caller_buffer_ms // FRAME_MS)
        )
        self._speaking = False
        self.on_agent_speech: Callable[[bool], None] | None = None
        self.data_channel: Any = None  # the browser's "control" channel, once open
        self.hung_up = ""
        self.caller_frames = 0
        self.caller_rate = 0  # rate of the browser's decoded audio: 48000 (Opus) or 8000 (PCMU)

    # --- caller -> call flow ------------------------------------------------------------------
    def pull_caller_frame(self) -> np.ndarray | None:
        return self._caller.popleft() if self._caller else None

    def feed_caller(self, frame: av.AudioFrame) -> None:
        """Take one decoded frame from the browser."""
        mono = to_mono_int16(frame)
        rate = int(frame.sample_rate)
        self.caller_rate = rate
        if self._from_browser is None or self._from_browser.in_rate != rate:
            self._from_browser = StreamResampler(rate, self.sample_rate)
        pcm = self._from_browser.process(mono)
        self._in = np.concatenate((self._in, pcm))
        while len(self._in) >= self.frame:
            self._caller.append(self._in[: self.frame])
            self._in = self._in[self.frame :]
            self.caller_frames += 1

    async def consume(self, track: Any) -> None:
        """Read the browser's audio track until it ends."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.feed_caller(frame)

    # --- call flow -> browser -----------------------------------------------------------------
    async def send_agent_frame(self, pcm: np.ndarray, speech: bool) -> None:
        if speech != self._speaking:
            self._speaking = speech
            if self.on_agent_speech is not None:
                self.on_agent_speech(speech)
        if self.track.readyState != "live":
            return
        out = self._to_browser.process(pcm)
        self._out = np.concatenate((self._out, out))
        step = self.track.samples
        while len(self._out) >= step:
            self.track.push(self._out[:step])
            self._out = self._out[step:]

    async def send_dtmf(self, digit: str) -> None:
        """Agent-side DTMF has no tone path to a browser: tell the page over the data channel."""
        channel = self.data_channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps({"dtmf": digit}))

    async def hangup(self, reason: str) -> None:
        if self.hung_up:
            return
        self.hung_up = reason or "hangup"
        self.track.stop()
        if self._close_peer is not None:
            try:
                await self._close_peer()
            except Exception as exc:  # aiortc fails closing a half-negotiated peer; it is gone anyway
                log.warning("peer connection close failed", extra={"error": type(exc).__name__})

    async def transfer(self, target: str, warm: bool, summary: str) -> tuple[bool, str]:
        return False, TRANSFER_REFUSED
