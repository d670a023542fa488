"""The call flow's transport for a SIP dialog and its RTP session (implements ``CallTransport``)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.sip.dialog import Dialog
from phoneagent.edge.sip.headers import ParseError, SipURI
from phoneagent.edge.sip.sockets import TransportError
from phoneagent.edge.transfer import Bridge, HoldTone, WarmTransfer, WarmTransferConfig
from phoneagent.runtime.errors import PhoneAgentError

log = logging.getLogger(__name__)


class SipCallTransport:
    name = "sip"

    def __init__(
        self,
        rtp: RtpSession,
        call_id: str,
        refer_timeout_s: float = 32.0,
        warm: WarmTransferConfig | None = None,
    ) -> None:
        self.rtp = rtp
        self.sample_rate = rtp.sample_rate  # 16000 on G.722 (wideband), 8000 on G.711: fixed for the call
        self.call_id = call_id
        self.dialog: Dialog | None = None  # set once the call is answered
        self.refer_timeout_s = refer_timeout_s
        self.warm = warm
        self.hung_up = asyncio.Event()
        self.hold: HoldTone | None = None  # set while a warm transfer keeps the caller waiting
        self.bridge: Bridge | None = None  # set once the caller is bridged to a human

    def attach(self, dialog: Dialog) -> None:
        self.dialog = dialog

    def pull_caller_frame(self) -> np.ndarray | None:
        if self.bridge is not None:
            return None  # the bridge relays the caller's audio to the human now
        return self.rtp.pull_frame()

    async def send_agent_frame(self, pcm: np.ndarray, speech: bool) -> None:
        if self.bridge is not None:
            return
        if self.hold is not None:
            self.rtp.send_audio(self.hold.next_frame(), True)
            return
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
        """Blind transfer by REFER, or warm (hold, summary to the human, bridge); the caller stays
        connected to the agent when it fails."""
        dialog = self.dialog
        if dialog is None or dialog.ended.is_set():
            return False, "call not connected"
        try:
            uri = SipURI.parse(target if ":" in target else f"sip:{target}@{dialog.remote_target.host}")
        except ParseError:
            return False, "transfer target is not a SIP URI or number"
        if warm:
            return await self._warm(dialog, uri, summary)
        try:
            status = await dialog.refer(uri, timeout_s=self.refer_timeout_s)
        except TransportError:
            return False, "transfer request could not be sent"
        log.info("sip transfer result", extra={"call_id": self.call_id, "status": status})
        if 200 <= status < 300:
            await self.hangup("transferred")
            return True, f"sip {status}"
        return False, f"sip {status}"

    async def _warm(self, dialog: Dialog, uri: SipURI, summary: str) -> tuple[bool, str]:
        if self.warm is None:
            return False, "warm transfer is not configured"
        attempt = WarmTransfer(self.warm, dialog, self.rtp, self.call_id)
        self.hold = HoldTone(self.sample_rate)
        try:
            ok, detail, bridge = await attempt.run(uri, summary)
        finally:
            self.hold = None
        log.info("sip warm transfer result", extra={"call_id": self.call_id, "ok": ok})
        if bridge is not None:
            self.bridge = bridge
            bridge.start()
        return ok, detail

    async def wait_bridge(self) -> None:
        """Return once a bridge to a human (if any) is over."""
        if self.bridge is not None:
            await self.bridge.wait()
