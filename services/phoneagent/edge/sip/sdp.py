"""SDP for audio calls (RFC 4566) and the offer/answer model (RFC 3264).

Supported: PCMU (0), PCMA (8), G.722 (9; 16 kHz audio on an 8000 Hz RTP clock, RFC 3551),
Opus (a dynamic payload type, ``opus/48000/2``, RFC 7587; 111 in our offers), telephone-event
(dynamic payload type, events 0-16), ptime, connection address, media port and
direction (sendrecv/sendonly/recvonly/inactive for hold), and SRTP keys (``a=crypto``, SDES,
RFC 4568) under a policy: ``off`` (plain RTP/AVP only: an RTP/SAVP offer is refused),
``optional`` (SRTP when the peer offers keys, on RTP/SAVP or on RTP/AVP; our offers carry keys
on RTP/AVP) or ``required`` (RTP/SAVP with keys only).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from phoneagent.audio.opus import OPUS_CLOCK, OPUS_DEFAULT_PT, OPUS_FMTP
from phoneagent.edge.media.srtp import SRTP_MODES, SUITES, Crypto, CryptoError, SrtpKeys
from phoneagent.runtime.errors import InvalidArgument

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
STATIC_CODECS = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000)}
OPUS = ("opus", OPUS_CLOCK)  # rtpmap of Opus (written with its two channels: opus/48000/2)
TELEPHONE_EVENT = "telephone-event"
TELEPHONE_EVENT_CLOCK = 8000
_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class SdpError(InvalidArgument):
    """Malformed SDP body."""


class NoCommonCodec(InvalidArgument):
    """The offer has no audio codec we support: answer the INVITE with 488."""

    status = 488


@dataclass
class Media:
    kind: str
    port: int
    proto: str
    formats: list[int]
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str = "sendrecv"
    ptime: int | None = None
    connection: str | None = None
    crypto: list[Crypto] = field(default_factory=list)  # usable a=crypto lines, in the peer's order
    other: list[str] = field(default_factory=list)

    @property
    def secure(self) -> bool:
        """The profile is SRTP (RTP/SAVP, RTP/SAVPF)."""
        return self.proto.startswith("RTP/SAVP")

    def codec(self, pt: int) -> tuple[str, int] | None:
        """(encoding name, clock rate) of a payload type, from rtpmap or the static table."""
        if pt in self.rtpmap:
            return self.rtpmap[pt]
        return STATIC_CODECS.get(pt)


@dataclass
class SessionDescription:
    address: str
    media: list[Media]
    session_id: int = 0
    version: int = 0
    username: str = "-"
    name: str = "-"
    direction: str | None = None  # session-level attribute, if any

    @property
    def audio(self) -> Media | None:
        return next((m for m in self.media if m.kind == "audio" and m.port != 0), None)

    def encode(self) -> bytes:
        lines = [
            "v=0",
            f"o={self.username} {self.session_id} {self.version} IN IP4 {self.address}",
            f"s={self.name}",
            f"c=IN IP4 {self.address}",
            "t=0 0",
        ]
        for m in self.media:
            lines.append(f"m={m.kind} {m.port} {m.proto} {' '.join(str(f) for f in m.formats)}")
            if m.connection and m.connection != self.address:
                lines.append(f"c=IN IP4 {m.connection}")
            for pt in m.formats:
                if pt in m.rtpmap:
                    name, clock = m.rtpmap[pt]
                    channels = "/2" if name.lower() == "opus" else ""
                    lines.append(f"a=rtpmap:{pt} {name}/{clock}{channels}")
                if pt in m.fmtp:
                    lines.append(f"a=fmtp:{pt} {m.fmtp[pt]}")
            if m.ptime:
                lines.append(f"a=ptime:{m.ptime}")
            lines.extend(f"a=crypto:{c.encode()}" for c in m.crypto)
            lines.append(f"a={m.direction}")
        return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _int(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 20:
        raise SdpError(f"bad {what}")
    return int(text)


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("bad c= line")
    return parts[2].split("/")[0]


def _media_line(value: str) -> Media:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError("bad m= line")
    port = _int(parts[1].split("/")[0], "media port")
    if port > 65535:
        raise SdpError("bad media port")
    formats = [_int(f, "payload type") for f in parts[3:]] if parts[2].startswith("RTP/") else []
    if any(f > 127 for f in formats):
        raise SdpError("bad payload type")
    return Media(parts[0], port, parts[2], formats, direction="")


def _attribute(media: Media, value: str) -> None:
    name, _, arg = value.partition(":")
    if name in DIRECTIONS:
        media.direction = name
    elif name == "rtpmap":
        pt_text, _, enc = arg.partition(" ")
        enc_parts = enc.strip().split("/")
        if len(enc_parts) < 2:
            raise SdpError("bad rtpmap")
        media.rtpmap[_int(pt_text, "payload type")] = (enc_parts[0], _int(enc_parts[1], "clock rate"))
    elif name == "fmtp":
        pt_text, _, params = arg.partition(" ")
        if pt_text.isdigit():
            media.fmtp[int(pt_text)] = params.strip()
    elif name == "ptime":
        media.ptime = _int(arg.strip().split(".")[0], "ptime")
    elif name == "crypto":
        try:
            media.crypto.append(Crypto.parse(arg))
        except CryptoError:
            pass  # a suite or key form we do not support: the peer may offer another line
    else:
        media.other.append(value)


def parse_sdp(data: bytes | str) -> SessionDescription:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    sdp = SessionDescription(address="", media=[])
    seen_v = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError("bad SDP line")
        key, value = line[0], line[2:]
        current = sdp.media[-1] if sdp.media else None
        if key == "v":
            seen_v = value == "0"
        elif key == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SdpError("bad o= line")
            sdp.username = parts[0]
            sdp.session_id = _int(parts[1], "session id")
            sdp.version = _int(parts[2], "session version")
        elif key == "s":
            sdp.name = value or "-"
        elif key == "c":
            if current is None:
                sdp.address = _connection(value)
            else:
                current.connection = _connection(value)
        elif key == "m":
            sdp.media.append(_media_line(value))
        elif key == "a" and current is not None:
            _attribute(current, value)
        elif key == "a" and value in DIRECTIONS:
            sdp.direction = value
    if not seen_v:
        raise SdpError("missing v=0")
    for m in sdp.media:
        if m.connection is None:
            if not sdp.address and m.port != 0:
                raise SdpError("missing connection address")
            m.connection = sdp.address
        if not m.direction:
            m.direction = sdp.direction or "sendrecv"
    return sdp


@dataclass(frozen=True)
class MediaParams:
    """What the media layer needs from a negotiated description."""

    remote_address: str
    remote_port: int
    payload_type: int
    codec: str
    clock_rate: int
    telephone_event_pt: int | None
    ptime: int
    direction: str
    srtp: SrtpKeys | None = None  # SRTP keys when the stream is encrypted
    # the payload type our own SDP gave the codec, when it differs from the peer's (a dynamic
    # one, Opus): the peer sends with ours (RFC 3264), we send with its
    local_payload_type: int | None = None

    @property
    def on_hold(self) -> bool:
        """The peer put us on hold: it stopped sending, or gave a null address."""
        return self.direction in ("sendonly", "inactive") or self.remote_address in ("0.0.0.0", "::")


def new_session_id() -> int:
    return int(time.time()) * 1000 + secrets.randbelow(1000)


def _telephone_event_pt(media: Media) -> int | None:
    for pt in media.formats:
        codec = media.codec(pt)
        if codec and codec[0].lower() == TELEPHONE_EVENT and codec[1] == TELEPHONE_EVENT_CLOCK:
            return pt
    return None


def _codec_name(media: Media, pt: int) -> str | None:
    """Our name (PCMU, PCMA, G722, OPUS) of an offered payload type we can use, else None."""
    codec = media.codec(pt)
    if codec is None:
        return None
    if pt in STATIC_CODECS:
        # G.722's clock is 8000 (RFC 3551); some phones write its sampling rate, 16000, instead
        clocks = (8000, 16000) if pt == 9 else (STATIC_CODECS[pt][1],)
        name = STATIC_CODECS[pt][0]
        return name if codec[1] in clocks and codec[0].upper() == name else None
    if pt >= 96 and codec[0].lower() == OPUS[0] and codec[1] == OPUS[1]:
        return "OPUS"
    return None


def check_srtp_mode(mode: str) -> str:
    if mode not in SRTP_MODES:
        raise InvalidArgument(f"SRTP mode must be one of {', '.join(SRTP_MODES)}")
    return mode


def offer(
    address: str,
    port: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    *,
    telephone_event_pt: int | None = 101,
    ptime: int = 20,
    direction: str = "sendrecv",
    session_id: int | None = None,
    version: int = 0,
    srtp: str = "off",
) -> SessionDescription:
    """A local offer listing ``codecs`` (by name) in order of preference; with ``srtp`` optional
    or required it carries our keys (one per supported suite), on RTP/SAVP when required."""
    check_srtp_mode(srtp)
    by_name = {name: pt for pt, (name, _) in STATIC_CODECS.items()} | {"OPUS": OPUS_DEFAULT_PT}
    formats = []
    for name in codecs:
        if name.upper() not in by_name:
            raise InvalidArgument(f"unsupported codec {name}")
        formats.append(by_name[name.upper()])
    proto = "RTP/SAVP" if srtp == "required" else "RTP/AVP"
    media = Media("audio", port, proto, formats, direction=direction, ptime=ptime, connection=address)
    if srtp != "off":
        media.crypto = [Crypto.new(tag, suite) for tag, suite in enumerate(SUITES, start=1)]
    for pt in formats:
        _describe(media, pt, "OPUS" if pt == OPUS_DEFAULT_PT else STATIC_CODECS[pt][0])
    if telephone_event_pt is not None:
        media.formats.append(telephone_event_pt)
        media.rtpmap[telephone_event_pt] = (TELEPHONE_EVENT, TELEPHONE_EVENT_CLOCK)
        media.fmtp[telephone_event_pt] = "0-16"
    sid = session_id if session_id is not None else new_session_id()
    return SessionDescription(address=address, media=[media], session_id=sid, version=version)


def _pick_codec(media: Media, supported: Sequence[str]) -> int:
    """The offered payload type of the first codec in ``supported`` (our order of preference)."""
    offered: dict[str, int] = {}
    for pt in media.formats:
        name = _codec_name(media, pt)
        if name is not None:
            offered.setdefault(name, pt)
    for name in supported:
        if name.upper() in offered:
            return offered[name.upper()]
    raise NoCommonCodec("no common audio codec")


def _pick_crypto(media: Media, srtp: str, reuse: Sequence[Crypto]) -> Crypto | None:
    """Our key for an offered audio line under policy ``srtp``: None for plain RTP; NoCommonCodec
    when the line is not acceptable (SRTP off and RTP/SAVP offered, SRTP required and RTP/AVP
    offered, or RTP/SAVP without a key we support). ``reuse``: our keys so far (a re-INVITE keeps
    the key of the suite it keeps)."""
    if media.secure and srtp == "off":
        raise NoCommonCodec("SRTP offered, but SRTP is off for this trunk")
    if not media.secure and srtp == "required":
        raise NoCommonCodec("plain RTP offered, but SRTP is required for this trunk")
    if srtp == "off" or not media.crypto:
        if media.secure:
            raise NoCommonCodec("no supported SRTP crypto suite offered")
        return None
    theirs = media.crypto[0]
    kept = next((c for c in reuse if c.suite == theirs.suite), None)
    return Crypto(theirs.tag, theirs.suite, kept.key) if kept else Crypto.new(theirs.tag, theirs.suite)


def answer(
    offer_sdp: SessionDescription,
    supported: Sequence[str] = ("PCMU", "PCMA"),
    *,
    address: str,
    port: int,
    ptime: int = 20,
    session_id: int | None = None,
    version: int = 0,
    local_direction: str = "sendrecv",
    srtp: str = "off",
    reuse: Sequence[Crypto] = (),
) -> SessionDescription:
    """Answer an offer: the first of ``supported`` (our order of preference) that the offer lists,
    plus telephone-event if offered, and our SRTP key when the offer has keys and ``srtp`` allows.

    Every offered m= line gets one in the answer (RFC 3264 section 6); the ones we do not take get port 0.
    Raises NoCommonCodec when no audio stream is acceptable (codec or SRTP policy).
    """
    check_srtp_mode(srtp)
    chosen: Media | None = None
    lines: list[Media] = []
    for m in offer_sdp.media:
        if (
            chosen is None
            and m.kind == "audio"
            and m.port != 0
            and m.proto.startswith(("RTP/AVP", "RTP/SAVP"))
        ):
            try:
                pt = _pick_codec(m, supported)
                crypto = _pick_crypto(m, srtp, reuse)
            except NoCommonCodec:
                lines.append(Media(m.kind, 0, m.proto, list(m.formats[:1]), direction="inactive"))
                continue
            chosen = _answer_media(m, pt, address, port, ptime, local_direction)
            if crypto is not None:
                chosen.crypto = [crypto]
            lines.append(chosen)
        else:
            lines.append(Media(m.kind, 0, m.proto, list(m.formats[:1]) or [0], direction="inactive"))
    if chosen is None:
        raise NoCommonCodec("no acceptable audio stream")
    sid = session_id if session_id is not None else new_session_id()
    return SessionDescription(address=address, media=lines, session_id=sid, version=version)


def _answer_media(m: Media, pt: int, address: str, port: int, ptime: int, local_direction: str) -> Media:
    formats = [pt]
    te = _telephone_event_pt(m)
    media = Media("audio", port, m.proto, formats, ptime=ptime, connection=address)
    name = _codec_name(m, pt)
    assert name is not None  # _pick_codec chose it
    _describe(media, pt, name)
    if te is not None:
        formats.append(te)
        media.rtpmap[te] = (TELEPHONE_EVENT, TELEPHONE_EVENT_CLOCK)
        media.fmtp[te] = "0-16"
    media.direction = combine_direction(m.direction, local_direction)
    return media


def _describe(media: Media, pt: int, name: str) -> None:
    """The rtpmap (and for Opus the fmtp: we play and capture 16 kHz) of our payload type ``pt``."""
    if name == "OPUS":
        media.rtpmap[pt] = OPUS
        media.fmtp[pt] = OPUS_FMTP
    else:
        media.rtpmap[pt] = STATIC_CODECS[pt]


def combine_direction(remote: str, local: str) -> str:
    """Our answer's direction given the peer's offered direction and what we want (RFC 3264 section 6.1)."""
    mirrored = _MIRROR.get(remote, "sendrecv")
    can_send = mirrored in ("sendrecv", "sendonly") and local in ("sendrecv", "sendonly")
    can_recv = mirrored in ("sendrecv", "recvonly") and local in ("sendrecv", "recvonly")
    return {
        (True, True): "sendrecv",
        (True, False): "sendonly",
        (False, True): "recvonly",
        (False, False): "inactive",
    }[(can_send, can_recv)]


def negotiated(remote: SessionDescription, local: SessionDescription | None = None) -> MediaParams:
    """Media parameters for sending to ``remote``: its address/port and the first codec it listed.

    When ``local`` is given (our offer or answer), the codec is the first of the remote's that we
    listed, and the stream is SRTP when both sides' lines carry keys of one tag (and suite).
    NoCommonCodec when our offer required SRTP and the answer has no matching key.
    """
    media = remote.audio
    if media is None:
        raise NoCommonCodec("no active audio stream")
    ours = local.audio if local is not None else None
    our_names = {_codec_name(ours, f) for f in ours.formats} if ours is not None else None
    pt = next(
        (
            f
            for f in media.formats
            if (n := _codec_name(media, f)) is not None and (our_names is None or n in our_names)
        ),
        None,
    )
    if pt is None:
        raise NoCommonCodec("no common audio codec")
    name = _codec_name(media, pt)
    assert name is not None
    clock = OPUS_CLOCK if name == "OPUS" else STATIC_CODECS[pt][1]
    ours_pt = next((f for f in ours.formats if _codec_name(ours, f) == name), None) if ours else None
    return MediaParams(
        remote_address=media.connection or remote.address,
        remote_port=media.port,
        payload_type=pt,
        codec=name,
        clock_rate=clock,
        telephone_event_pt=_telephone_event_pt(media),
        ptime=media.ptime or 20,
        direction=media.direction,
        srtp=_keys(ours, media),
        local_payload_type=ours_pt if ours_pt != pt else None,
    )


def _keys(ours: Media | None, theirs: Media) -> SrtpKeys | None:
    if ours is None or not ours.crypto:
        if theirs.secure:
            raise NoCommonCodec("the peer's stream is SRTP and we have no key for it")
        return None
    for remote in theirs.crypto:
        local = next((c for c in ours.crypto if c.tag == remote.tag and c.suite == remote.suite), None)
        if local is not None:
            return SrtpKeys(local=local, remote=remote)
    if ours.secure or theirs.secure:
        raise NoCommonCodec("no SRTP key in common with the peer")
    return None  # best-effort SRTP offered on RTP/AVP, plain RTP answered
