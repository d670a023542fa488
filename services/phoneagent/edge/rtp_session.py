"""One call's RTP endpoint: a UDP socket in the configured port range, G.711 or G.722 in and out
(SRTP when negotiated), RFC 4733 DTMF.

Inbound datagrams pass :class:`RtpStreamState` (source check, flood limit, negotiated payload types);
audio goes to a :class:`JitterBuffer`, telephone events to a :class:`DtmfReceiver`. The call flow
pulls one decoded frame per 20 ms tick at the call's rate (8 kHz G.711, 16 kHz G.722). Outbound
audio is one packet per 20 ms frame with a continuous timestamp, the marker bit on the first
packet of each talkspurt. Garbage never raises.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import secrets
import time
from collections.abc import Callable

import numpy as np

from phoneagent.audio.g722 import RtpCodec, open_codec
from phoneagent.audio.resample import StreamResampler
from phoneagent.edge.media.dtmf import DtmfDigit, DtmfReceiver, dtmf_packets
from phoneagent.edge.media.jitter import JitterBuffer, JitterStats
from phoneagent.edge.media.rtp import RtpPacket, seq_add, ts_add
from phoneagent.edge.media.rtp_stream import RtpStreamState
from phoneagent.edge.media.srtp import SrtpContext, SrtpError
from phoneagent.edge.sip.sdp import TELEPHONE_EVENT_CLOCK, MediaParams
from phoneagent.runtime.errors import InvalidArgument, Unavailable
from phoneagent.runtime.metrics import CALLER_AUDIO_LOST

log = logging.getLogger(__name__)
FRAME_MS = 20
DtmfCallback = Callable[[DtmfDigit], None]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.session.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp socket error", extra={"error": type(exc).__name__})


class RtpSession:
    """Create with :meth:`open`, then :meth:`start` once the peer's SDP is known."""

    def __init__(self, host: str, call_id: str = "") -> None:
        self.host = host
        self.call_id = call_id
        self.port = 0
        self.params: MediaParams | None = None
        self.codec: RtpCodec | None = None
        self._rate: int | None = None  # the call's PCM rate, fixed by the first codec negotiated
        self._from_codec: StreamResampler | None = None  # set while a re-INVITE's codec runs at
        self._to_codec: StreamResampler | None = None  # another rate than the call's
        self.on_dtmf: DtmfCallback | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._remote: tuple[str, int] | None = None
        self._state: RtpStreamState | None = None
        self._jitter: JitterBuffer | None = None
        self._lost_counted = 0  # the jitter buffer's discarded frames already in the metric
        self._srtp: SrtpContext | None = None
        self._dtmf = DtmfReceiver()
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._talking = False
        self._sending_dtmf = asyncio.Lock()
        self._media_started = False
        self._sdp_remote: tuple[str, int] | None = None  # where the peer's SDP says to send
        self.send_paused = False  # the peer put us on hold (sendonly/inactive): send nothing
        self.sent = 0
        self.srtp_refused = 0  # packets libsrtp would not protect (dropped)
        self.closed = False
        self.last_received = 0.0  # monotonic time of the last accepted packet (or of start/update)

    @classmethod
    async def open(cls, host: str, port_min: int, port_max: int, call_id: str = "") -> RtpSession:
        """Bind an even port in [port_min, port_max] (tried from a random start); Unavailable if none."""
        session = cls(host, call_id)
        loop = asyncio.get_running_loop()
        first = port_min + (port_min % 2)
        ports = list(range(first, port_max + 1, 2)) or [port_min]
        start = random.randrange(len(ports))
        for candidate in ports[start:] + ports[:start]:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(session), local_addr=(host, candidate)
                )
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise Unavailable("RTP socket could not be opened") from None
            session._transport = transport  # type: ignore[assignment]
            session.port = transport.get_extra_info("sockname")[1]
            return session
        raise Unavailable("no free RTP port in the configured range")

    def start(self, params: MediaParams, *, latch: bool = False) -> None:
        """Begin exchanging media with the negotiated peer."""
        codec = open_codec(params.codec)
        self.params, self.codec = params, codec
        self._rate = self._rate or codec.sample_rate
        self._convert(codec.sample_rate)
        self._remote = self._sdp_remote = (params.remote_address, params.remote_port)
        self._state = RtpStreamState(expected=self._remote, latch=latch, payload_types=_types(params))
        self._set_srtp(params)
        self._new_jitter(codec)
        self._dtmf = DtmfReceiver(clock_rate=TELEPHONE_EVENT_CLOCK)
        self.send_paused = not _peer_receives(params)
        self.last_received = time.monotonic()

    def restart_inactivity_clock(self) -> None:
        """Count silence from now (the call was just answered: ringing is not silence)."""
        self.last_received = time.monotonic()

    def silent_for(self, now: float | None = None) -> float | None:
        """Seconds since the peer last sent RTP we accepted; None while it announced it sends none
        (on hold: recvonly, inactive or a null address) or before media was negotiated."""
        if self.params is None or self.params.direction in ("recvonly", "inactive") or self.params.on_hold:
            return None
        return (time.monotonic() if now is None else now) - self.last_received

    def update(self, params: MediaParams) -> None:
        """The peer's media changed mid-call (re-INVITE): a new address or port, codec or direction.

        A new address is sent to at once and inbound RTP is accepted from it (latched afresh); a
        new codec gets a fresh jitter buffer; sending pauses while the peer holds the call
        (sendonly, inactive or a null address) and resumes when it takes the call back.
        """
        if self._state is None or self.params is None:
            self.start(params)
            return
        old = self.params
        self.params = params
        self.last_received = time.monotonic()  # a re-INVITE restarts the inactivity clock
        self.send_paused = not _peer_receives(params)
        if params.srtp != old.srtp:
            self._set_srtp(params)
        if (params.payload_type, params.codec) != (old.payload_type, old.codec):
            self.codec = open_codec(params.codec)
            self._new_jitter(self.codec)
            self._convert(self.codec.sample_rate)
        address = (params.remote_address, params.remote_port)
        if address[0] not in _NULL_ADDRESSES and address != self._sdp_remote:
            self._remote = self._sdp_remote = address
            self._state.retarget(address, _types(params))
            log.info(
                "rtp peer moved",
                extra={"call_id": self.call_id, "rtp_host": address[0], "rtp_port": address[1]},
            )
        else:
            self._state.retarget(None, _types(params))

    def _set_srtp(self, params: MediaParams) -> None:
        """Encrypt and authenticate with the negotiated SRTP keys (new keys: a new context)."""
        self._srtp = SrtpContext(params.srtp) if params.srtp is not None else None
        if self._state is not None:
            self._state.unprotect = self._srtp.unprotect if self._srtp is not None else None

    @property
    def sample_rate(self) -> int:
        """Rate of the PCM frames pulled and sent: the negotiated codec's (8000 before media)."""
        return self._rate or 8000

    def set_rate(self, rate: int) -> None:
        """Fix the call's PCM rate before media is negotiated (an outbound call announces its rate
        before the callee picks a codec); frames are resampled when the codec's rate differs."""
        if self._rate is not None and self._rate != rate:
            raise InvalidArgument("the call's audio rate is already fixed")
        self._rate = rate

    def _convert(self, codec_rate: int) -> None:
        """Resample between the call's rate and a codec a re-INVITE switched to at another rate."""
        rate = self.sample_rate
        same = codec_rate == rate
        self._from_codec = None if same else StreamResampler(codec_rate, rate)
        self._to_codec = None if same else StreamResampler(rate, codec_rate)

    @property
    def encrypted(self) -> bool:
        return self._srtp is not None

    # --- inbound ------------------------------------------------------------------------------
    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._state is None or self._jitter is None or self.params is None:
            return  # not negotiated yet
        now = time.monotonic()
        got = self._state.receive(data, addr, now)
        if got is None:
            return
        self.last_received = now
        pkt = got.packet
        if got.new_ssrc and self._media_started:
            self._jitter.reset()  # a new stream (re-INVITE, transfer): its timestamps start afresh
        if pkt.payload_type == self.params.telephone_event_pt:
            for digit in self._dtmf.on_packet(pkt.timestamp, pkt.payload, now):
                self._digit(digit)
            return
        self._jitter.push(pkt.timestamp, pkt.payload, now)
        self._media_started = True
        if self._remote != self._state.source and self._state.source is not None:
            self._remote = self._state.source  # symmetric RTP: answer where the peer sends from

    def _digit(self, digit: DtmfDigit) -> None:
        if self.on_dtmf is not None:
            self.on_dtmf(digit)

    def pull_frame(self) -> np.ndarray | None:
        """One 20 ms frame of caller audio (int16 at :attr:`sample_rate`, concealed when lost);
        None before media."""
        for digit in self._dtmf.poll(time.monotonic()):
            self._digit(digit)
        if self._jitter is None or not self._media_started:
            return None
        pcm = self._jitter.pull().pcm
        self._count_lost()
        return (
            pcm
            if self._from_codec is None
            else _exact(self._from_codec.process(pcm), len(pcm), self._from_codec)
        )

    def _new_jitter(self, codec: RtpCodec) -> None:
        self._count_lost()  # what the old buffer lost stays counted
        self._jitter = JitterBuffer(codec)
        self._lost_counted = 0

    def _count_lost(self) -> None:
        """Count the caller frames the jitter buffer threw away unplayed as they go, so the
        metric shows a loss at the talk spurt it hit rather than when the call ends."""
        if self._jitter is None:
            return
        discarded = self._jitter.stats.discarded
        if discarded > self._lost_counted:
            CALLER_AUDIO_LOST.labels(stage="edge_jitter").inc(discarded - self._lost_counted)
            self._lost_counted = discarded

    @property
    def drops(self) -> int:
        return self._state.dropped if self._state is not None else 0

    @property
    def jitter_stats(self) -> JitterStats | None:
        """What the jitter buffer did with the caller's audio (played, concealed, discarded ...)."""
        return self._jitter.stats if self._jitter is not None else None

    # --- outbound -----------------------------------------------------------------------------
    def _send(self, payload_type: int, payload: bytes, timestamp: int, marker: bool) -> None:
        if self._transport is None or self._remote is None or self.closed or self.send_paused:
            return
        pkt = RtpPacket(payload_type, self._seq, timestamp, self._ssrc, payload, marker)
        self._seq = seq_add(self._seq, 1)
        data = pkt.to_bytes()
        if self._srtp is not None:
            try:
                data = self._srtp.protect(data)
            except SrtpError:
                self.srtp_refused += 1  # nothing goes out in clear: the packet is dropped
                return
        self._transport.sendto(data, self._remote)
        self.sent += 1

    def send_audio(self, pcm: np.ndarray, speech: bool) -> None:
        """Send one 20 ms frame (int16 at :attr:`sample_rate`). Skipped (timestamp still advancing)
        during DTMF."""
        if self.codec is None or self.params is None:
            return
        if self._to_codec is not None:
            pcm = _exact(self._to_codec.process(pcm), len(pcm), self._to_codec)
        ticks = len(pcm) * self.codec.clock_rate // self.codec.sample_rate
        if not self._sending_dtmf.locked():
            marker = speech and not self._talking
            payload = self.codec.encode(pcm)
            if payload:  # an encoder may hold a frame back (none does at 20 ms today)
                self._send(self.params.payload_type, payload, self._ts, marker)
        self._talking = speech
        self._ts = ts_add(self._ts, ticks)

    async def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Send one RFC 4733 key press; audio packets pause meanwhile. InvalidArgument for a bad digit."""
        if self.params is None or self.params.telephone_event_pt is None:
            raise InvalidArgument("the peer did not negotiate telephone-event")
        packets = dtmf_packets(digit, duration_ms, clock_rate=TELEPHONE_EVENT_CLOCK)
        pt = self.params.telephone_event_pt
        async with self._sending_dtmf:
            loop = asyncio.get_running_loop()
            begin, stamp = loop.time(), self._ts
            for p in packets:
                delay = begin + p.offset_ms / 1000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._send(pt, p.payload, stamp, p.marker)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        self._count_lost()
        stats = self.jitter_stats
        if stats is not None and stats.pushed:
            log.info(
                "rtp caller audio",
                extra={
                    "call_id": self.call_id,
                    "played": stats.played,
                    "concealed": stats.concealed,
                    "late": stats.late,
                    "discarded": stats.discarded,
                    "dropped_for_delay": stats.dropped_for_delay,
                    "restarts": stats.restarts,
                },
            )
        if self._state is not None and self._state.dropped:
            log.info(
                "rtp session closed",
                extra={
                    "call_id": self.call_id,
                    "accepted": self._state.accepted,
                    "dropped": dict(self._state.drops),
                },
            )


_NULL_ADDRESSES = ("0.0.0.0", "::")


def _exact(pcm: np.ndarray, source_len: int, rs: StreamResampler) -> np.ndarray:
    """A resampled frame padded or cut to exactly 20 ms at the output rate."""
    n = round(source_len * rs.ratio)
    return pcm[:n] if len(pcm) >= n else np.pad(pcm, (0, n - len(pcm)))


def _types(params: MediaParams) -> set[int]:
    types = {params.payload_type}
    if params.local_payload_type is not None:
        types.add(params.local_payload_type)
    if params.telephone_event_pt is not None:
        types.add(params.telephone_event_pt)
    return types


def _peer_receives(params: MediaParams) -> bool:
    """The peer's SDP lets us send (it is not sendonly/inactive and gave a real address)."""
    return not params.on_hold
