"""The call flow's transport for a SIP dialog and its RTP session (implements ``CallTransport``)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.sip.dialog import Dialog
from phoneagent.edge.sip.headers import ParseError, SipURI
from phoneagent.edge.sip.transport import TransportError
from phoneagent.runtime.errors import PhoneAgentError

log = logging.getLogger(__name__)


class SipTransport:
    name = "sip"
    sample_rate = 8000

    def __init__(self, rtp: RtpSession, call_id: str, refer_timeout_s: float = 32.0) -> None:
        self.rtp = rtp
        self.call_id = call_id
        self.dialog: Dialog | None = None  # set once the call is answered
        self.refer_timeout_s = refer_timeout_s
        self.hung_up = asyncio.Event()

    def attach(self, dialog: Dialog) -> None:
        self.dialog = dialog

    def pull_caller_frame(self) -> np.ndarray | None:
        return self.rtp.pull_frame()

    async def send_agent_frame(self, pcm: np.ndarray, speech: bool) -> None:
        self.rtp.send_audio(pcm, speech)

    async def send_dtmf(self, digit: str) -> None:
        try:
            await self.rtp.send_dtmf(digit)
        except PhoneAgentError as exc:
            log.info("dtmf not sent", extra={"call_id": self.call_id, "reason": exc.message})

    async def hangup(self, reason: str) -> None:
        """Send BYE (in the background: a silent peer must not hold up the call's control lane)."""
        dialog = self.dialog
        if self.hung_up.is_set():
            return
        self.hung_up.set()
        if dialog is not None and not dialog.ended.is_set():
            log.info("sip hangup", extra={"call_id": self.call_id, "reason": reason[:60]})
            dialog.ua.spawn(dialog.bye())

    async def transfer(self, target: str, warm: bool, summary: str) -> tuple[bool, str]:
        """Blind transfer by REFER; the caller stays connected when it fails."""
        if warm:
            return False, "warm transfer not supported yet"
        dialog = self.dialog
        if dialog is None or dialog.ended.is_set():
            return False, "call not connected"
        try:
            uri = SipURI.parse(target if ":" in target else f"sip:{target}@{dialog.remote_target.host}")
        except ParseError:
            return False, "transfer target is not a SIP URI or number"
        try:
            status = await dialog.refer(uri, timeout_s=self.refer_timeout_s)
        except TransportError:
            return False, "transfer request could not be sent"
        log.info("sip transfer result", extra={"call_id": self.call_id, "status": status})
        if 200 <= status < 300:
            await self.hangup("transferred")
            return True, f"sip {status}"
        return False, f"sip {status}"
