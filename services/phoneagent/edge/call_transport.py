"""What a call flow (:class:`~phoneagent.edge.callflow.EdgeCall`) needs from the line it runs on:
the caller's audio in, the agent's audio and DTMF out, hang-up and transfer. Implemented by
:mod:`phoneagent.edge.sip_call_transport` (SIP dialog + RTP) and
:mod:`phoneagent.edge.webrtc.call_transport` (a browser's peer connection); the recorder wraps
either one."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class CallTransport(Protocol):
    """What a call needs from SIP/RTP or WebRTC."""

    name: str  # "sip" or "webrtc", a metrics label
    sample_rate: int  # rate of the frames exchanged with the call flow

    def pull_caller_frame(self) -> np.ndarray | None:
        """One 20 ms frame of caller audio (int16), or None when nothing is due."""

    async def send_agent_frame(self, pcm: np.ndarray, speech: bool) -> None:
        """Send one 20 ms frame (int16) to the caller; ``speech`` False for silence."""

    async def send_dtmf(self, digit: str) -> None: ...

    async def hangup(self, reason: str) -> None: ...

    async def transfer(self, target: str, warm: bool, summary: str) -> tuple[bool, str]:
        """Transfer the caller; (ok, safe detail)."""
