"""Per-call inbound RTP admission: source latching, SSRC tracking and flood limiting.

Symmetric RTP: the first valid packet (from the address offered in SDP, when one is
given and latching is off) fixes the peer's address; packets from anywhere else are
dropped before they are parsed, so a flood from a third party costs almost nothing.
Packets from the latched address go through a token bucket, then, on an SRTP call, through
authentication and the replay check (so a forged or replayed packet never latches the source
or reaches the jitter buffer). Every drop is counted by reason; nothing raises.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

from phoneagent.edge.media.rtp import RtpError, RtpPacket, parse_rtp
from phoneagent.edge.media.srtp import SrtpError

log = logging.getLogger(__name__)

Address = tuple[str, int]


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` stored. Time is passed in."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp: float | None = None

    def take(self, now: float) -> bool:
        if self._stamp is not None and now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        if self._stamp is None or now > self._stamp:
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def wait_s(self) -> float:
        """Seconds from the last ``take`` until a token is there again (0 when one is)."""
        return max(0.0, (1.0 - self._tokens) / self.rate)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A packet admitted to the call. ``new_ssrc`` is true for the first packet of a (new) SSRC."""

    packet: RtpPacket
    new_ssrc: bool


class RtpStreamState:
    """Admission state for one call's inbound RTP.

    ``expected`` is the address from the peer's SDP, if known. With ``latch=True`` the
    first valid packet from any address fixes the source (NAT-friendly symmetric RTP);
    with ``latch=False`` only ``expected`` is accepted. ``payload_types`` limits what is
    admitted (the negotiated audio and telephone-event types). A changed SSRC from the
    latched address is accepted (re-INVITEs and transfers do that) and reported.
    """

    def __init__(
        self,
        *,
        expected: Address | None = None,
        latch: bool = True,
        payload_types: Collection[int] | None = None,
        rate_pps: float = 150.0,
        burst: int = 50,
    ) -> None:
        if not latch and expected is None:
            raise ValueError("an expected address is required when latching is off")
        self._expected = expected
        self._latch = latch
        self._payload_types = frozenset(payload_types) if payload_types is not None else None
        self._bucket = TokenBucket(rate_pps, burst)
        self.unprotect: Callable[[bytes], bytes] | None = None  # SRTP: authenticate and decrypt
        self.source: Address | None = None
        self.ssrc: int | None = None
        self.accepted = 0
        self.drops: Counter[str] = Counter()

    def receive(self, data: bytes, addr: Address, now: float) -> Accepted | None:
        """Admit or drop one datagram received from ``addr`` at monotonic time ``now``."""
        reason = self._check_source(addr)
        if reason is None and not self._bucket.take(now):
            reason = "rate"
        if reason is not None:
            self.drops[reason] += 1
            return None
        if self.unprotect is not None:
            try:
                data = self.unprotect(data)
            except SrtpError:
                self.drops["srtp"] += 1
                return None
        try:
            packet = parse_rtp(data)
        except RtpError as exc:
            self.drops[exc.reason] += 1
            return None
        if self._payload_types is not None and packet.payload_type not in self._payload_types:
            self.drops["payload_type"] += 1
            return None
        if self.source is None:
            self.source = addr
            log.info("rtp source latched", extra={"rtp_host": addr[0], "rtp_port": addr[1]})
        new_ssrc = packet.ssrc != self.ssrc
        if new_ssrc:
            if self.ssrc is not None:
                log.info("rtp ssrc changed", extra={"ssrc": packet.ssrc, "previous_ssrc": self.ssrc})
            self.ssrc = packet.ssrc
        self.accepted += 1
        return Accepted(packet, new_ssrc)

    def retarget(self, expected: Address | None, payload_types: Collection[int] | None) -> None:
        """The peer's SDP changed (re-INVITE): admit ``payload_types``, and when ``expected`` is a
        new address, expect it and latch afresh. A new SSRC is still reported when it comes."""
        if expected is not None and expected != self._expected:
            self._expected = expected
            self.source = None
        self._payload_types = frozenset(payload_types) if payload_types is not None else None

    def _check_source(self, addr: Address) -> str | None:
        if self.source is not None:
            return None if addr == self.source else "source"
        if not self._latch and addr != self._expected:
            return "source"
        return None

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())
