"""SIP requests and responses: parsing, serialisation and TCP stream framing (RFC 3261 sections 7, 18.3)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from phoneagent.edge.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    ParseError,
    SipURI,
    Via,
    canonical_name,
    is_token,
)

MAX_MESSAGE_BYTES = 65535
MAX_HEADERS = 200
_REQUIRED_FOR_REPLY = ("Via", "From", "To", "Call-ID", "CSeq")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6]\d\d) ?(.*)$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP/2\.0$")

REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    420: "Bad Extension",
    483: "Too Many Hops",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    603: "Decline",
    600: "Busy Everywhere",
}


@dataclass
class SipMessage(ABC):
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # --- typed accessors (raise ParseError on malformed values) -------------------------
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.headers.get("CSeq") or "")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        value = self.headers.get("Via")
        if value is None:
            raise ParseError("missing Via")
        return Via.parse(value)

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("To") or "")

    @property
    def contact(self) -> NameAddr | None:
        value = self.headers.get("Contact")
        return NameAddr.parse(value) if value and value != "*" else None

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    @abstractmethod
    def start_line(self) -> str:
        """The request line or the status line; each kind of message writes its own."""

    def encode(self) -> bytes:
        lines = [self.start_line()]
        lines += [f"{name}: {value}" for name, value in self.headers if name != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class SipRequest(SipMessage):
    method: str = ""
    uri: SipURI = field(default_factory=lambda: SipURI("sip", "invalid"))

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass
class SipResponse(SipMessage):
    status: int = 0
    reason: str = ""

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason or REASONS.get(self.status, 'Unknown')}"


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep) :]
    return data, b""


def _header_lines(head: str) -> list[str]:
    """Unfold continuation lines (leading whitespace continues the previous header)."""
    lines: list[str] = []
    for raw in re.split(r"\r?\n", head):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += " " + raw.strip()
        elif raw:
            lines.append(raw)
    return lines


def _parse_headers(lines: list[str]) -> Headers:
    if len(lines) > MAX_HEADERS:
        raise ParseError("too many headers")
    headers = Headers()
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name or not is_token(name):
            raise ParseError("malformed header line")
        headers.add(name, value)
    return headers


def _start(first: str) -> SipMessage:
    status = _STATUS_LINE.match(first)
    if status:
        return SipResponse(status=int(status.group(1)), reason=status.group(2).strip())
    request = _REQUEST_LINE.match(first)
    if not request:
        raise ParseError("malformed start line")
    return SipRequest(method=request.group(1).upper(), uri=SipURI.parse(request.group(2)))


def _replyable(headers: Headers) -> bool:
    try:
        for name in _REQUIRED_FOR_REPLY:
            if not headers.get(name):
                return False
        for via in headers.get_all("Via"):
            Via.parse(via)
        NameAddr.parse(headers.get("From") or "")
        NameAddr.parse(headers.get("To") or "")
    except ParseError:
        return False
    return True


def _validate(msg: SipMessage) -> None:
    for name in _REQUIRED_FOR_REPLY:
        if not msg.headers.get(name):
            raise ParseError(f"missing {name}")
    _ = msg.vias, msg.cseq, msg.from_, msg.to, msg.contact
    for name in ("Record-Route", "Route"):
        for value in msg.headers.get_all(name):
            NameAddr.parse(value)
    if isinstance(msg, SipRequest) and msg.cseq.method != msg.method and msg.method != "ACK":
        raise ParseError("CSeq method does not match request method")
    if isinstance(msg, SipRequest) and msg.method == "ACK" and msg.cseq.method != "ACK":
        raise ParseError("CSeq method does not match request method")


def _content_length(headers: Headers) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 7:
        raise ParseError("bad Content-Length")
    return int(value)


def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one complete message (a UDP datagram, or one framed TCP message)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ParseError("message too large")
    head_bytes, body = _split_head(data.lstrip(b"\r\n"))
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("header section is not UTF-8") from exc
    lines = _header_lines(head)
    if not lines:
        raise ParseError("empty message")
    msg = _start(lines[0])
    msg.headers = _parse_headers(lines[1:])
    try:
        length = _content_length(msg.headers)
        if length is None and stream:
            length = 0
        if length is not None:
            if length > len(body):
                raise ParseError("body shorter than Content-Length")
            body = body[:length]
        msg.body = body
        _validate(msg)
    except ParseError as exc:
        exc.can_reply = isinstance(msg, SipRequest) and _replyable(msg.headers)
        exc.partial = msg
        raise
    return msg


class StreamFramer:
    """Splits a TCP byte stream into SIP messages using Content-Length (RFC 3261 section 18.3)."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """Return the complete raw messages now available; raise ParseError if the stream is unusable."""
        self._buf += data
        out: list[bytes] = []
        while True:
            while self._buf[:2] == b"\r\n":  # keep-alive CRLFs between messages
                del self._buf[:2]
            idx = self._buf.find(b"\r\n\r\n")
            if idx < 0:
                if len(self._buf) > self._max:
                    raise ParseError("header section too large")
                return out
            length = _framed_length(bytes(self._buf[:idx]))
            total = idx + 4 + length
            if total > self._max:
                raise ParseError("message too large")
            if len(self._buf) < total:
                return out
            out.append(bytes(self._buf[:total]))
            del self._buf[:total]


def _framed_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and canonical_name(name.decode("latin-1")) == "Content-Length":
            text = value.strip().decode("latin-1")
            if not text.isdigit() or len(text) > 7:
                raise ParseError("bad Content-Length")
            return int(text)
    return 0


def make_response(request: SipRequest, status: int, reason: str = "", *, to_tag: str = "") -> SipResponse:
    """A response copying Via, From, To, Call-ID and CSeq from the request (RFC 3261 section 8.2.6)."""
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for name_, value in request.headers:
            if name_ == name:
                headers.add(name, _reply_cseq(value, request.method) if name == "CSeq" else value)
    if to_tag and status != 100:
        to = request.to
        if not to.tag:
            to.params["tag"] = to_tag
            headers.set("To", str(to))
    if 180 <= status < 300:
        for name_, value in request.headers:
            if name_ == "Record-Route":
                headers.add(name_, value)
    return SipResponse(headers=headers, status=status, reason=reason or REASONS.get(status, ""))


def _reply_cseq(value: str, method: str) -> str:
    """The request's CSeq, or ``0 <method>`` when it is malformed (a 400 to it stays well-formed,
    and the client still matches it by branch and method)."""
    try:
        CSeq.parse(value)
    except ParseError:
        return f"0 {method}"
    return value
