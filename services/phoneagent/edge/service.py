"""The edge service: SIP calls in and out, each one an :class:`EdgeCall` on the bus.

Inbound: an INVITE gets an RTP port and an SDP answer; it rings while the call is published and
every stage claims a session (503 when one cannot), then it is answered. Outbound: a CallStarted
request on ``edge_dial`` is accepted (empty ControlEvent reply, or one carrying ``error``) only
with the policy's one-time approval named by its ``dial_decision_id``, signed by policy for that
call and number (fail closed; see :mod:`phoneagent.runtime.dial_approvals`,
``PA_APPROVAL_PUBLIC_KEY_FILES``, ``PA_EDGE_REQUIRE_DIAL_APPROVAL``); its sessions are
claimed, and the call is placed through the trunk (or straight to a SIP URI); busy, no answer and
failure end it with the matching reason. On SIGTERM no new calls are taken and calls
in progress may finish for ``PA_DRAIN_TIMEOUT_S``; the rest are hung up.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phoneagent.edge.callflow import EdgeCall, EdgeCallConfig
from phoneagent.edge.media.dtmf import DtmfDigit
from phoneagent.edge.outbound import OutboundCalls
from phoneagent.edge.recorder import CallRecording, RecordingConfig
from phoneagent.edge.recording_volume import RecordingRetention, VolumeGuard, parse_quantity
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import (
    CallFailed,
    Dialog,
    DialogHandlers,
    DigestServer,
    IncomingCall,
    MediaParams,
    NoCommonCodec,
    SourceRateLimit,
    TcpLimits,
    TrunkTable,
    UAConfig,
    UserAgent,
    answer,
    negotiated,
)
from phoneagent.edge.sip.auth import parse_digest
from phoneagent.edge.sip.registration import Registration
from phoneagent.edge.sip_call_transport import SipCallTransport
from phoneagent.edge.transfer import SummaryVoice, WarmTransferConfig
from phoneagent.runtime import subjects
from phoneagent.runtime.approvals import Verifier
from phoneagent.runtime.bus import Subscription
from phoneagent.runtime.enums import enum_name
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError, Unavailable
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.redact import mask_number
from phoneagent.runtime.service import Service
from phoneagent.runtime.settings import CommonSettings
from phoneagent.v1 import call_pb2

log = logging.getLogger(__name__)
SETTINGS = EdgeSettings
ASR_RATE = 16000


@dataclass
class ActiveCall:
    call: EdgeCall
    transport: SipCallTransport
    rtp: RtpSession
    dialing: asyncio.Task[Any] | None = None
    dtmf: asyncio.Queue[DtmfDigit] = field(default_factory=asyncio.Queue)
    recording: CallRecording | None = None  # records only once policy allows it


class EdgeService(OutboundCalls, Service):
    name = "edge"

    def __init__(self, common: CommonSettings, settings: EdgeSettings | None = None) -> None:
        super().__init__(common)
        self.settings = settings or EdgeSettings()
        self.ua: UserAgent | None = None
        self.registrations: dict[str, Registration] = {}  # trunk name -> its outbound registration
        self.calls: dict[str, ActiveCall] = {}
        self.accepting = True
        self._dial_sub: Subscription[Any] | None = None
        self._approvals: Any = None  # the pa_dial_approvals bucket, opened on the first dial
        try:
            self.verifier = Verifier.from_files(self.settings.approval_public_key_files)
        except InvalidArgument as exc:
            raise InvalidArgument(f"PA_APPROVAL_PUBLIC_KEY_FILES: {exc.message}") from None
        self._web: Any = None
        self.web_host = ""
        self.web_port = 0
        s = self.settings
        limit = parse_quantity(s.recording_volume_limit) if s.recording_volume_limit else 0
        self.volume = VolumeGuard(Path(s.recording_dir), s.recording_min_free_mb * 1024 * 1024, limit)

    # --- lifecycle ------------------------------------------------------------------------------
    async def setup(self) -> None:
        s = self.settings
        if s.recording_enabled:  # the edge deletes its own expired recordings: they are on its volume
            retention = RecordingRetention(
                self.volume, s.recording_retention_days, s.recording_s3_url, s.recording_purge_every_s
            )
            self.tasks.spawn(retention.run(), "recording-retention")
        self.ua = await self._start_ua()
        self._start_registrations(self.ua)
        self._dial_sub = await self.bus.serve(
            subjects.edge_dial(), call_pb2.CallStarted, self._on_dial, queue_group="edge"
        )
        if not self.settings.require_dial_approval:
            log.warning("PA_EDGE_REQUIRE_DIAL_APPROVAL=false: dialling without policy approval (labs only)")
        if not self.verifier.keys:
            log.warning(
                "PA_APPROVAL_PUBLIC_KEY_FILES not set: no approval verifies, so this edge will not "
                "dial, transfer or record"
            )
        if self.settings.web_enabled:
            await self._start_web()

    async def _start_web(self) -> None:
        """Serve the browser page and WebRTC signalling (its own HTTP server, PA_WEB_PORT)."""
        from phoneagent.edge.webrtc.gateway import run_gateway
        from phoneagent.edge.webrtc.settings import WebRtcSettings
        from phoneagent.runtime.settings import load

        web = load(WebRtcSettings)
        config = EdgeCallConfig(
            min_speech_ms=self.settings.barge_in_min_speech_ms,
            barge_in_long_ms=self.settings.barge_in_long_ms,
            backchannel_wait_ms=self.settings.backchannel_wait_ms,
            max_duration_s=web.max_call_duration_s,
            approvals=self.verifier,
            denoise=self.settings.denoise("webrtc"),
        )
        try:
            self._web, self.web_port = await run_gateway(
                self.bus, web.host, web.port, web, config, recording=self._recording
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or not self.settings.sip_port_fallback:
                raise
            log.warning("web port busy; using a free one", extra={"port": web.port})
            self._web, self.web_port = await run_gateway(
                self.bus, web.host, 0, web, config, recording=self._recording
            )
        self.web_host = web.host
        log.info("browser page listening", extra={"web_port": self.web_port})

    def _ua_config(self, port: int, tls_port: int | None = None) -> UAConfig:
        s = self.settings
        trunks = s.trunks
        passwords = s.trunk_passwords
        users = {t.username: passwords[t.name] for t in trunks if t.username}
        auth = None
        if users:
            auth = DigestServer(
                "phone-agent", users, secret=s.digest_secret, nonce_lifetime_s=s.nonce_lifetime_s
            )
        return UAConfig(
            host=s.sip_host,
            port=port,
            transports=tuple(t.lower() for t in s.sip_transports),
            advertised_host=s.public_address or None,
            codecs=s.codec_names,
            max_calls=s.max_calls,
            auth=auth,
            trunks=TrunkTable(trunks),
            invite_limit=SourceRateLimit(s.invite_rate, s.invite_burst),
            tls=s.tls,
            tls_port=s.tls_port if tls_port is None else tls_port,
            tcp=TcpLimits(s.tcp_max_connections, s.tcp_max_per_source, s.tcp_idle_timeout_s),
            max_transactions=s.max_transactions,
            no_answer_timeout_s=s.no_answer_timeout_s,
        )

    async def _start_ua(self) -> UserAgent:
        port, tls_port = self.settings.sip_port, self.settings.tls_port
        for attempt in range(4):
            ua = UserAgent(self._ua_config(port, tls_port), on_incoming_call=self._on_incoming)
            try:
                await ua.start()
                return ua
            except OSError as exc:
                await ua.close()
                if exc.errno != errno.EADDRINUSE or not (self.settings.sip_port_fallback or port == 0):
                    raise Unavailable(f"SIP port {port} could not be bound") from None
                log.warning(
                    "sip port taken: binding any free port",
                    extra={"port": port, "tls_port": tls_port, "try": attempt},
                )
                port = tls_port = 0
        raise Unavailable("no SIP port could be bound")

    def _start_registrations(self, ua: UserAgent) -> None:
        """Register every trunk that has ``register`` (its flow is then admitted as the trunk)."""
        passwords = self.settings.register_password_map
        for trunk in ua.config.trunks.trunks if ua.config.trunks is not None else ():
            if trunk.register is None:
                continue
            reg = Registration(ua, trunk, passwords.get(trunk.name, ""), table=ua.config.trunks)
            reg.start()
            self.registrations[trunk.name] = reg

    async def _shutdown(self) -> None:
        await self.drain_calls(self.common.drain_timeout_s)
        await super()._shutdown()

    def _gateway(self) -> Any:
        """The browser-call gateway, when the page is served."""
        if self._web is None:
            return None
        from phoneagent.edge.webrtc.gateway import GATEWAY_KEY

        return self._web.app[GATEWAY_KEY]

    async def drain_calls(self, timeout_s: float) -> None:
        """Refuse new calls, SIP and browser alike; let calls in progress finish for ``timeout_s``,
        then hang up the rest."""
        gateway = self._gateway()
        if gateway is None:
            await self._drain_sip_calls(timeout_s)
        else:
            await asyncio.gather(self._drain_sip_calls(timeout_s), gateway.drain(timeout_s))

    async def _drain_sip_calls(self, timeout_s: float) -> None:
        self.accepting = False
        if self._dial_sub is not None and self.bus.connected:
            await self.bus.unsubscribe(self._dial_sub)
            self._dial_sub = None
        waits = [asyncio.ensure_future(a.call.ended.wait()) for a in self.calls.values()]
        if waits:
            log.info("draining calls", extra={"calls": len(waits), "timeout_s": timeout_s})
            _, late = await asyncio.wait(waits, timeout=timeout_s)
            for w in late:
                w.cancel()
        for active in list(self.calls.values()):
            await active.transport.hangup("edge shutting down")
            await active.call.end(call_pb2.END_REASON_AGENT_HANGUP, "edge shutting down")

    async def teardown(self) -> None:
        if self._web is not None:
            await self._web.cleanup()  # hangs up browser calls still in progress
        if self.registrations:
            await asyncio.gather(*(reg.stop() for reg in self.registrations.values()))
        if self.ua is not None:
            await self.ua.close()

    def status(self) -> dict[str, object]:
        gateway = self._gateway()
        browser_calls = gateway.active_calls if gateway is not None else 0
        out: dict[str, object] = {
            "active_calls": len(self.calls) + browser_calls,
            "accepting": self.accepting,
        }
        if self.ua is not None:
            host, port = self.ua.local_address()
            out["sip"] = f"{host}:{port}"
            if "TLS" in self.ua.transports:
                out["sip_tls"] = "{}:{}".format(*self.ua.local_address("TLS"))
        if self.registrations:
            out["registrations"] = {name: reg.status() for name, reg in self.registrations.items()}
        if self.web_port:
            out["web"] = f"http://{self.web_host}:{self.web_port}/"
        return out

    # --- shared call plumbing --------------------------------------------------------------------
    def _new_call(self, started: call_pb2.CallStarted, rtp: RtpSession) -> ActiveCall:
        s = self.settings
        warm = WarmTransferConfig(
            host=s.sip_host,
            advertised=s.advertised,
            rtp_port_min=s.rtp_port_min,
            rtp_port_max=s.rtp_port_max,
            codecs=s.codec_names,
            answer_timeout_s=s.no_answer_timeout_s,
            voice=SummaryVoice(self.bus),
        )
        transport = SipCallTransport(rtp, started.meta.call_id, warm=warm)
        config = EdgeCallConfig(
            min_speech_ms=self.settings.barge_in_min_speech_ms,
            barge_in_long_ms=self.settings.barge_in_long_ms,
            backchannel_wait_ms=self.settings.backchannel_wait_ms,
            max_duration_s=self.settings.max_call_duration_s,
            approvals=self.verifier,
            denoise=self.settings.denoise("sip"),
        )
        recording = self._recording(started.meta.call_id, transport.sample_rate)
        media = recording.transport(transport) if recording is not None else transport
        active = ActiveCall(EdgeCall(self.bus, started, media, config), transport, rtp, recording=recording)
        rtp.on_dtmf = active.dtmf.put_nowait
        return active

    def _recording(self, call_id: str, rate: int) -> CallRecording | None:
        s = self.settings
        if not s.recording_enabled:
            return None
        config = RecordingConfig(Path(s.recording_dir), s.recording_s3_url, self.volume)
        return CallRecording(self.bus, call_id, rate, config, self.verifier)

    def _handlers(self, active: ActiveCall) -> DialogHandlers:
        call = active.call

        async def on_bye(_: Dialog) -> None:
            await call.end(call_pb2.END_REASON_CALLER_HANGUP, "caller hung up")

        async def on_dtmf(_: Dialog, digit: str) -> None:
            await call.caller_dtmf(digit, 0)

        def on_hold(_: Dialog, held: bool) -> None:
            call.peer_hold = held  # agent speech waits, queued, until the caller takes the call back
            log.info("call hold changed", extra={"call_id": call.call_id, "held": held})

        def on_media(_: Dialog, params: MediaParams) -> None:
            active.rtp.update(params)

        return DialogHandlers(on_bye=on_bye, on_dtmf=on_dtmf, on_hold=on_hold, on_media=on_media)

    async def _connected(self, active: ActiveCall, dialog: Dialog) -> None:
        active.transport.attach(dialog)
        codec = active.rtp.params.codec if active.rtp.params is not None else ""
        await active.call.answered(codec)
        active.call.tasks.spawn(self._dtmf_pump(active), "dtmf")
        active.call.tasks.spawn(self._watch_rtp(active), "rtp-timeout")
        self.tasks.spawn(self._watch_dialog(active, dialog), f"dialog:{active.call.call_id}")

    async def _dtmf_pump(self, active: ActiveCall) -> None:
        while True:
            digit = await active.dtmf.get()
            await active.call.caller_dtmf(digit.digit, int(digit.duration_ms))

    async def _watch_rtp(self, active: ActiveCall) -> None:
        """End the call when the peer sends no RTP for ``PA_RTP_TIMEOUT_S`` (a dead or vanished
        peer would otherwise hold every stage's session until the maximum call length). The clock
        stops while the peer has the call on hold and restarts with each re-INVITE."""
        timeout = self.settings.rtp_timeout_s
        active.rtp.restart_inactivity_clock()
        while True:
            silent = active.rtp.silent_for()
            if silent is not None and silent >= timeout:
                break
            await asyncio.sleep(timeout if silent is None else timeout - silent)
        log.info("call ended: no rtp from peer", extra={"call_id": active.call.call_id, "timeout_s": timeout})
        await active.transport.hangup("no media")
        await active.call.end(call_pb2.END_REASON_MEDIA_TIMEOUT, "no rtp from peer")

    async def _watch_dialog(self, active: ActiveCall, dialog: Dialog) -> None:
        """The dialog ended without a BYE handler running (e.g. the ACK never came): end the call."""
        ended = asyncio.ensure_future(dialog.ended.wait())
        over = asyncio.ensure_future(active.call.ended.wait())
        try:
            await asyncio.wait({ended, over}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            over.cancel()
        lost = dialog.end_reason == "local_bye" and not active.transport.hung_up.is_set()
        if dialog.ended.is_set() and not active.call.ended.is_set() and lost:
            await active.call.end(call_pb2.END_REASON_FAILED, "sip dialog lost")

    async def _supervise(self, active: ActiveCall) -> None:
        """Release a call's resources once it has ended, whichever side ended it."""
        call = active.call
        try:
            await call.ended.wait()
            await active.transport.wait_bridge()  # a caller bridged to a human stays up until hang-up
        finally:
            if active.dialing is not None and not active.dialing.done():
                active.dialing.cancel()  # sends CANCEL
            dialog = active.transport.dialog
            if dialog is not None and not dialog.ended.is_set():
                await active.transport.hangup("call ended")
            if active.transport.bridge is not None:
                await active.transport.bridge.close()
            active.rtp.close()
            if active.recording is not None:
                await active.recording.finish()
            self.calls.pop(call.call_id, None)
            log.info(
                "call released",
                extra={"call_id": call.call_id, "reason": enum_name(call_pb2.EndReason, call.end_reason)},
            )

    def _track(self, active: ActiveCall) -> None:
        self.calls[active.call.call_id] = active
        self.tasks.spawn(self._supervise(active), f"call:{active.call.call_id}")

    def _started(
        self, call_id: str, direction: int, from_uri: str, to_uri: str, codec: str, playout_rate: int
    ) -> call_pb2.CallStarted:
        return call_pb2.CallStarted(
            meta=new_meta(call_id, "edge"),
            direction=direction,  # type: ignore[arg-type]
            transport=call_pb2.TRANSPORT_SIP,
            from_uri=from_uri,
            to_uri=to_uri,
            agent=Path(self.common.agent_path).stem,
            sample_rate=ASR_RATE,
            codec=codec,
            playout_rate=playout_rate,
        )

    # --- inbound ----------------------------------------------------------------------------------
    async def _on_incoming(self, inc: IncomingCall) -> None:
        if not self.accepting or len(self.calls) >= self.settings.max_calls or inc.remote_sdp is None:
            await inc.reject(488 if inc.remote_sdp is None and self.accepting else 503)
            return
        try:
            rtp = await RtpSession.open(
                self.settings.sip_host, self.settings.rtp_port_min, self.settings.rtp_port_max
            )
        except Unavailable:
            log.warning("no rtp port for call", extra={"call_id": inc.call_id})
            await inc.reject(503)
            return
        try:
            await self._admit(inc, rtp)
        except BaseException:
            rtp.close()
            raise

    async def _admit(self, inc: IncomingCall, rtp: RtpSession) -> None:
        assert inc.remote_sdp is not None
        srtp = self._srtp_mode(inc)
        try:
            local = answer(
                inc.remote_sdp,
                self.settings.codec_names,
                address=self.settings.advertised,
                port=rtp.port,
                srtp=srtp,
            )
            params = negotiated(inc.remote_sdp, local)
        except NoCommonCodec as exc:
            log.info("sip call refused", extra={"call_id": inc.call_id, "status": 488, "reason": exc.message})
            await inc.reject(488)
            rtp.close()
            return
        rtp.start(params, latch=self.settings.rtp_latch)
        call_id = subjects.new_call_id()
        rtp.call_id = call_id
        started = self._started(
            call_id,
            call_pb2.DIRECTION_INBOUND,
            str(inc.caller.uri),
            str(inc.callee.uri),
            params.codec,
            rtp.sample_rate,
        )
        log.info(
            "inbound call",
            extra={
                "call_id": call_id,
                "sip_call_id": inc.call_id,
                "caller": mask_number(inc.caller.uri.user),
                "codec": params.codec,
                "srtp": params.srtp is not None,
            },
        )
        active = self._new_call(started, rtp)
        try:
            await inc.ring()
        except CallFailed:
            rtp.close()
            return  # cancelled already
        if not await self._start_call(active):
            if inc.pending:
                await inc.reject(503)
            return
        self._track(active)
        try:
            dialog = await inc.answer(local, self._handlers(active))
        except (CallFailed, InvalidArgument):
            await active.call.end(call_pb2.END_REASON_CANCELLED, "caller cancelled")
            return
        await self._connected(active, dialog)

    def _srtp_mode(self, inc: IncomingCall) -> str:
        """The SRTP policy of the trunk the INVITE came in on (admission found one)."""
        auth = inc.request.headers.get("Authorization")
        username = parse_digest(auth.partition(" ")[2]).get("username") if auth else None
        table = self.ua.config.trunks if self.ua is not None else None
        trunk = table.for_call(inc.peer.addr[0], username) if table is not None else None
        return trunk.srtp if trunk is not None else "optional"

    async def _start_call(self, active: ActiveCall) -> bool:
        """Publish the call and claim its sessions; on failure end it as an error."""
        try:
            await active.call.start()
            if active.recording is not None:
                await active.recording.start()
            return True
        except PhoneAgentError as exc:
            log.warning(
                "call not started: stage unavailable",
                extra={"call_id": active.call.call_id, "error_kind": exc.kind.name},
            )
            await active.call.end(call_pb2.END_REASON_ERROR, "stage unavailable")
            active.rtp.close()
            return False
