"""SIP header values: URIs, name-addr, Via, CSeq and a case-insensitive header list (RFC 3261 s. 20, 25)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from phoneagent.runtime.errors import ErrorKind, PhoneAgentError


class ParseError(PhoneAgentError):
    """Malformed SIP input. ``can_reply`` is true when enough headers were read to answer with 400."""

    def __init__(self, message: str, *, can_reply: bool = False, partial: object | None = None) -> None:
        super().__init__(ErrorKind.INVALID_ARGUMENT, message)
        self.can_reply = can_reply
        self.partial = partial


COMPACT = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "e": "Content-Encoding",
    "s": "Subject",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Length",
        "Content-Type",
        "Max-Forwards",
        "Route",
        "Record-Route",
        "Allow",
        "Accept",
        "Supported",
        "Require",
        "Unsupported",
        "User-Agent",
        "Server",
        "Authorization",
        "WWW-Authenticate",
        "Proxy-Authorization",
        "Proxy-Authenticate",
        "Event",
        "Subscription-State",
        "Refer-To",
        "Referred-By",
        "Retry-After",
        "Expires",
        "Reason",
        "Allow-Events",
        "Session-Expires",
        "Content-Encoding",
        "Subject",
        "Accept-Encoding",
        "Date",
    )
}
_CANONICAL["www-authenticate"] = "WWW-Authenticate"
_CANONICAL["call-id"] = "Call-ID"
_CANONICAL["cseq"] = "CSeq"
# Headers whose values are comma-separated lists (RFC 3261 section 7.3.1). Auth headers are not.
LIST_HEADERS = frozenset(
    h.lower()
    for h in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Accept",
        "Supported",
        "Require",
        "Unsupported",
        "Allow-Events",
        "Accept-Encoding",
        "Content-Encoding",
    )
)
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    if key in COMPACT:
        return COMPACT[key]
    return _CANONICAL.get(key, "-".join(part.capitalize() for part in key.split("-")))


def is_token(text: str) -> bool:
    return bool(_TOKEN.match(text))


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes and angle brackets."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    angle = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            angle += 1
        elif not quoted and ch == ">":
            angle = max(0, angle - 1)
        if ch == sep and not quoted and angle == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    if quoted:
        raise ParseError("unterminated quoted string")
    parts.append("".join(buf))
    return parts


def parse_params(text: str) -> dict[str, str]:
    """``;a=1;b;c="x"`` (leading ``;`` optional) into a dict with lower-cased names."""
    params: dict[str, str] = {}
    for raw in split_outside_quotes(text, ";"):
        raw = raw.strip()
        if not raw:
            continue
        name, _, value = raw.partition("=")
        name = name.strip().lower()
        if not name or not is_token(name):
            raise ParseError("bad parameter name")
        params[name] = value.strip()
    return params


def format_params(params: dict[str, str]) -> str:
    return "".join(f";{k}={v}" if v != "" else f";{k}" for k, v in params.items())


@dataclass
class SipURI:
    scheme: str
    host: str
    user: str = ""
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipURI:
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in ("sip", "sips", "tel"):
            raise ParseError("unsupported URI scheme")
        rest, _, headers = rest.partition("?")
        if scheme == "tel":
            number, _, ptext = rest.partition(";")
            return cls(scheme, host="", user=number, params=parse_params(ptext), headers=headers)
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            hostpart = rest
        hostport, _, ptext = hostpart.partition(";")
        host, port = _split_hostport(hostport)
        return cls(
            scheme,
            host=host,
            user=userinfo.split(":", 1)[0],
            port=port,
            params=parse_params(ptext),
            headers=headers,
        )

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{host}{port}{format_params(self.params)}{headers}"

    @property
    def transport(self) -> str:
        return self.params.get("transport", "udp").lower()


def _split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError("bad IPv6 reference")
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ParseError("bad host")
    else:
        host, _, port_text = text.partition(":")
    if not host or not re.match(r"^[A-Za-z0-9.:_-]+$", host):
        raise ParseError("bad host")
    if port_text == "":
        return host.lower(), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ParseError("bad port")
    return host.lower(), int(port_text)


@dataclass
class NameAddr:
    """``"Display" <uri>;params`` as used in From, To, Contact, Route, Refer-To."""

    uri: SipURI
    display: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if "<" in text:
            lt = text.index("<")
            gt = text.find(">", lt)
            if gt < 0:
                raise ParseError("unterminated name-addr")
            display = text[:lt].strip()
            if display.startswith('"'):
                if len(display) < 2 or not display.endswith('"'):
                    raise ParseError("bad display name")
                display = display[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            return cls(SipURI.parse(text[lt + 1 : gt]), display, parse_params(text[gt + 1 :]))
        # addr-spec form: parameters after the URI belong to the header, not the URI.
        uri_text, _, ptext = text.partition(";")
        return cls(SipURI.parse(uri_text), "", parse_params(ptext))

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")

    def __str__(self) -> str:
        display = ""
        if self.display:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{format_params(self.params)}"


@dataclass
class Via:
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        proto, _, rest = text.strip().partition(" ")
        parts = [p.strip() for p in proto.split("/")]
        if len(parts) != 3 or parts[0].upper() != "SIP" or not parts[2]:
            raise ParseError("bad Via protocol")
        sent_by, _, ptext = rest.strip().partition(";")
        host, port = _split_hostport(sent_by)
        return cls(parts[2].upper(), host, port, parse_params(ptext))

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")

    @property
    def sent_by(self) -> tuple[str, int]:
        default = 5061 if self.transport == "TLS" else 5060
        return self.host, self.port or default

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"


@dataclass(frozen=True)
class CSeq:
    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10 or not is_token(parts[1]):
            raise ParseError("bad CSeq")
        seq = int(parts[0])
        if seq >= 2**31:
            raise ParseError("bad CSeq")
        return cls(seq, parts[1].upper())

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


class Headers:
    """Ordered header list, case-insensitive, compact names expanded to their full form."""

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items or []:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value.strip()))

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value (the first list element for list headers)."""
        values = self.get_all(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value, repeated headers and comma-separated lists flattened in order."""
        key = canonical_name(name).lower()
        out: list[str] = []
        for n, v in self._items:
            if n.lower() != key:
                continue
            if key in LIST_HEADERS:
                out.extend(p.strip() for p in split_outside_quotes(v, ",") if p.strip())
            else:
                out.append(v)
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h
