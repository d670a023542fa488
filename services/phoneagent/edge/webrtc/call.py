"""One browser call: a peer connection, its transport, the edge call flow and the page feed."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from phoneagent.edge.callflow import EdgeCall, EdgeCallConfig
from phoneagent.edge.recorder import CallRecording
from phoneagent.edge.webrtc.call_transport import WebRtcTransport
from phoneagent.edge.webrtc.events import CallFeed
from phoneagent.edge.webrtc.settings import WebRtcSettings
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.modelfiles import MissingModelError
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import call_pb2

try:
    from aiortc import (
        RTCConfiguration,
        RTCPeerConnection,
        RTCRtpCodecCapability,
        RTCRtpSender,
        RTCSessionDescription,
    )
    from aiortc.exceptions import OperationError
    from aiortc.sdp import SessionDescription
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingModelError(
        "WebRTC support (aiortc) is not installed", extra="edge", package="aiortc"
    ) from exc

log = logging.getLogger(__name__)
DTMF_DIGITS = frozenset("0123456789*#ABCD")
MAX_SDP = 64 * 1024
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([A-Za-z0-9_.-]+)/", re.MULTILINE)


def negotiated_codec(sdp: str) -> str:
    """The first codec of the audio m-line of an SDP answer (``opus``, ``PCMU``), or ""."""
    m = re.search(r"^m=audio \d+ \S+ (\d+)", sdp, re.MULTILINE)
    if not m:
        return ""
    names = dict(_RTPMAP.findall(sdp))
    return names.get(m.group(1), "")


def _parse_offer(sdp: str) -> SessionDescription:
    """aiortc's parse of an offer; a malformed one (aiortc asserts on many) is the caller's error."""
    try:
        offer = SessionDescription.parse(sdp)
    except Exception as exc:  # AssertionError, ValueError, IndexError, KeyError ... from the parser
        raise InvalidArgument("the offer is not a valid SDP") from exc
    for media in offer.media:
        # aiortc would accept these and fail later, in ICE or in the DTLS handshake
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise InvalidArgument(f"the offer's {media.kind} section has no ICE credentials")
        if media.dtls is None or not media.dtls.fingerprints:
            raise InvalidArgument(f"the offer's {media.kind} section has no DTLS fingerprint")
        if media.kind == "audio" and any(c.payloadType not in media.fmt for c in media.rtp.codecs):
            # aiortc reads codecs from a=rtpmap alone; the m= line is what the browser offers
            raise InvalidArgument("the offer maps audio payload types that its m=audio line does not list")
    return offer


# Makes the recorder of a call (call id, rate), or None when recording is off.
RecordingFactory = Callable[[str, int], CallRecording | None]


class WebRtcCall:
    def __init__(
        self,
        bus: Bus,
        settings: WebRtcSettings,
        config: EdgeCallConfig,
        recording: RecordingFactory | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.call_id = subjects.new_call_id()
        self.events_key = secrets.token_urlsafe(24)  # only the page that placed the call may watch it
        self.tasks = TaskOwner(f"webrtc:{self.call_id}")
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.transport = WebRtcTransport(settings.call_rate, close_peer=self.pc.close)
        self.config = config
        # Recorded like a phone call: only once policy allows it (see phoneagent.edge.recorder).
        self.recording = recording(self.call_id, settings.call_rate) if recording is not None else None
        self.edge: EdgeCall | None = None
        self.feed: CallFeed | None = None
        self.codec = ""
        self._connected = asyncio.Event()
        self._answered = False

    async def accept(self, offer_sdp: str) -> str:
        """Answer the browser's offer; the SDP answer carries every local candidate.

        Our audio transceiver exists before the offer is applied, with the configured codecs
        (PA_WEB_CODECS) as its preferences: aiortc settles a transceiver's codecs while it
        applies the remote description, so preferences set afterwards would change nothing.
        """
        if not offer_sdp or len(offer_sdp) > MAX_SDP or "m=audio" not in offer_sdp:
            raise InvalidArgument("the offer must be an SDP with an audio section")
        offer = _parse_offer(offer_sdp)
        audio_sections = [m for m in offer.media if m.kind == "audio"]
        if len(audio_sections) != 1:
            raise InvalidArgument("the offer must have exactly one audio section")
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)
        audio = self.pc.addTransceiver(self.transport.track, direction="sendrecv")
        audio.setCodecPreferences(self._wanted_codecs())
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except OperationError as exc:  # no codec in common with our preferences
            raise InvalidArgument(f"no common audio codec (we accept {self._codec_names()})") from exc
        except Exception as exc:  # aiortc validates with asserts and lookups: any failure is the offer's
            log.warning(
                "browser offer rejected", extra={"call_id": self.call_id, "error": type(exc).__name__}
            )
            raise InvalidArgument("the offer is not a valid SDP") from exc
        try:  # a fresh connection answering an accepted offer fails only on what the offer said
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            log.warning(
                "browser offer unanswerable", extra={"call_id": self.call_id, "error": type(exc).__name__}
            )
            raise InvalidArgument("the offer could not be answered (check its directions and mids)") from exc
        answer = self.pc.localDescription.sdp
        self.codec = negotiated_codec(answer)
        if self.codec.lower() not in {c.lower() for c in self.settings.codecs}:
            raise InvalidArgument(f"no common audio codec (we accept {self._codec_names()})")
        return str(answer)

    def _wanted_codecs(self) -> list[RTCRtpCodecCapability]:
        """aiortc's capabilities for the configured codecs, in the configured order."""
        return [
            c
            for mime in self.settings.codec_mimes
            for c in RTCRtpSender.getCapabilities("audio").codecs
            if c.mimeType.lower() == mime.lower()
        ]

    def _codec_names(self) -> str:
        return ", ".join(self.settings.codecs)

    async def start(self) -> None:
        """Publish the call and claim its sessions; media starts once the peer connects."""
        started = call_pb2.CallStarted(
            meta=new_meta(self.call_id, "edge"),
            direction=call_pb2.DIRECTION_INBOUND,
            transport=call_pb2.TRANSPORT_WEBRTC,
            from_uri="webrtc:browser",
            to_uri="webrtc:agent",
            agent=self.settings.agent,
            sample_rate=16000,
            codec=self.codec,
        )
        media = self.recording.transport(self.transport) if self.recording is not None else self.transport
        self.edge = EdgeCall(self.bus, started, media, self.config)
        edge = self.edge
        self.feed = CallFeed(self.bus, self.call_id, lambda: edge.speech_ended_at)
        feed = self.feed
        self.transport.on_agent_speech = lambda on: self._spawn(feed.agent_speech(on), "feed-speech")
        await self.feed.start()
        await self.edge.start()
        if self.recording is not None:
            await self.recording.start()
        self.tasks.spawn(self._answer_when_connected(), "connect")
        log.info("browser call started", extra={"call_id": self.call_id, "codec": self.codec})

    async def hang_up(self, reason: int, detail: str) -> None:
        """End the call from our side (page request, failure, shutdown)."""
        await self.transport.hangup(detail)  # closes the peer connection
        if self.edge is not None:
            await self.edge.end(reason, detail)

    async def wait_ended(self) -> None:
        if self.edge is not None:
            await self.edge.ended.wait()

    async def close(self) -> None:
        """Release everything after the call ended."""
        await self.transport.hangup("closed")
        await self.tasks.close(timeout=2.0)
        if self.feed is not None:
            await self.feed.close()
        if self.recording is not None:
            await self.recording.finish()

    # --- peer connection events ------------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> None:
        try:
            self.tasks.spawn(coro, name)
        except RuntimeError:  # the call is closing
            coro.close()

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            self._spawn(self.transport.consume(track), "caller-audio")

    def _on_datachannel(self, channel: Any) -> None:
        self.transport.data_channel = channel
        channel.on("message", lambda message: self._spawn(self._on_message(message), "dc-message"))
        channel.on("close", lambda: self._spawn(self._peer_left("data channel closed"), "dc-close"))

    async def _on_message(self, message: Any) -> None:
        try:
            body = json.loads(message) if isinstance(message, str) and len(message) < 1024 else None
        except json.JSONDecodeError:
            body = None
        digit = body.get("dtmf") if isinstance(body, dict) else None
        if not isinstance(digit, str) or digit not in DTMF_DIGITS or len(digit) != 1:
            log.warning("bad data channel message dropped", extra={"call_id": self.call_id})
            return
        if self.edge is not None and self._answered:
            await self.edge.caller_dtmf(digit, 100)

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            await self._peer_left(f"peer connection {state}")

    async def _peer_left(self, detail: str) -> None:
        if self.edge is not None and not self.edge.ended.is_set() and not self.transport.hung_up:
            log.info("browser left", extra={"call_id": self.call_id, "detail": detail})
            await self.hang_up(call_pb2.END_REASON_CALLER_HANGUP, "caller hung up")

    async def _answer_when_connected(self) -> None:
        assert self.edge is not None
        try:
            await asyncio.wait_for(self._connected.wait(), self.settings.connect_timeout_s)
        except TimeoutError:
            log.warning("browser media did not connect", extra={"call_id": self.call_id})
            await self.hang_up(call_pb2.END_REASON_FAILED, "media did not connect")
            return
        self._answered = True
        self.answered_at = time.monotonic()
        await self.edge.answered()
