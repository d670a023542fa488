"""Who may call in: inbound trunks (source address ranges and/or digest credentials, or the
flow of a registration the edge keeps with the trunk's registrar) and a per-source INVITE rate
limit.

A trunk names the address ranges its INVITEs come from, the digest user it authenticates as,
or both (then both must hold). A trunk that registers (``register``) also admits what its
registrar sends while the registration holds: the addresses the registrar resolved to. An INVITE
whose source matches no trunk is refused before any call state exists; a source that matches only
trunks with credentials must authenticate as one of them.
Each trunk has its SRTP policy (``srtp``: off, optional, required; see ``sdp.py``).
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from phoneagent.edge.media.rtp_stream import TokenBucket
from phoneagent.edge.media.srtp import SRTP_MODES
from phoneagent.edge.sip.headers import ParseError, SipURI

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Register:
    """Outbound registration of a trunk: the edge registers ``user`` at ``registrar`` (a ``sip:``
    or ``sips:`` URI, ``;transport=udp|tcp|tls``) and keeps the binding fresh."""

    registrar: str
    user: str
    auth_user: str = ""  # digest user, when it is not ``user``
    domain: str = ""  # the AOR's domain; default the registrar's host
    expires: int = 300  # seconds asked for; the registrar may grant less
    keepalive_s: float = 25.0  # CRLF (TCP/TLS) or OPTIONS (UDP) this often; 0: none

    @property
    def uri(self) -> SipURI:
        return SipURI.parse(self.registrar)

    @property
    def aor(self) -> SipURI:
        return SipURI(self.uri.scheme, self.domain or self.uri.host, self.user)


@dataclass(frozen=True)
class Trunk:
    name: str
    sources: tuple[Network, ...] = ()  # empty: any source (then a username is required)
    username: str = ""  # digest user the trunk must authenticate as; empty: no digest
    register: Register | None = None  # registers with this registrar; its flow may call in
    srtp: str = "optional"  # SRTP policy for its calls: off, optional (when offered), required

    def matches(self, source: str) -> bool:
        if not self.sources:
            return self.register is None  # a registering trunk alone admits only its registrar
        try:
            addr = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(addr in net for net in self.sources)


class TrunkTable:
    """The configured trunks; :meth:`for_source` says which ones an INVITE may come from."""

    def __init__(self, trunks: Iterable[Trunk]) -> None:
        self.trunks = tuple(trunks)
        self._flows: dict[str, frozenset[str]] = {}  # trunk name -> its registrar's addresses

    def set_flow(self, trunk: str, addresses: Iterable[str]) -> None:
        """The addresses a registered trunk's registrar sends from (empty: not registered)."""
        self._flows[trunk] = frozenset(addresses)

    def for_source(self, source: str) -> list[Trunk]:
        return [t for t in self.trunks if t.matches(source) or source in self._flows.get(t.name, ())]

    def for_call(self, source: str, username: str | None) -> Trunk | None:
        """The trunk an admitted INVITE came in on: the first whose sources admit the address
        without digest, else the one it authenticated as (``username``, verified at admission)."""
        candidates = self.for_source(source)
        by_address = [t for t in candidates if not t.username]
        if by_address:
            return by_address[0]
        return next((t for t in candidates if username and t.username == username), None)

    @staticmethod
    def needs_digest(candidates: Sequence[Trunk]) -> bool:
        """Every trunk the source may be asks for credentials (none admits by address alone)."""
        return bool(candidates) and all(t.username for t in candidates)


class SourceRateLimit:
    """A token bucket per source address: ``rate`` requests a second, bursts of ``burst``.

    At most ``max_sources`` buckets are kept (least recently seen dropped first), so a spray of
    addresses costs bounded memory.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_sources: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self._max = max_sources
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, source: str) -> float:
        """0.0 when a request from ``source`` may go on (a token is spent), else the seconds until
        the next token."""
        bucket = self._buckets.pop(source, None) or TokenBucket(self.rate, self.burst)
        self._buckets[source] = bucket  # most recently seen last
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return 0.0 if bucket.take(self._clock()) else bucket.wait_s

    @staticmethod
    def retry_after(wait_s: float) -> int:
        return max(1, math.ceil(wait_s))


def parse_trunks(text: str) -> tuple[Trunk, ...]:
    """Trunks from JSON: ``[{"name": "carrier", "sources": ["203.0.113.0/24"], "username": "pbx",
    "srtp": "required"}]``; a trunk that registers adds ``"register": {"registrar":
    "sip:pbx:5060;transport=tcp", "user": "1001"}`` (optional there: ``auth_user``, ``domain``,
    ``expires``, ``keepalive_s``).

    Raises ValueError naming what is wrong. Each trunk needs a unique name and sources, a
    username, a registration, or more than one; a source range that admits every address must
    come with a username.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("must be a JSON list of trunks") from None
    if not isinstance(raw, list):
        raise ValueError("must be a JSON list of trunks")
    out: list[Trunk] = []
    for i, item in enumerate(raw):
        out.append(_trunk(item, i))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ValueError("trunk names must be unique")
    users = [t.username for t in out if t.username]
    if len(set(users)) != len(users):
        raise ValueError("trunk usernames must be unique")
    return tuple(out)


def _trunk(item: object, i: int) -> Trunk:
    if not isinstance(item, dict) or set(item) - {"name", "sources", "username", "register", "srtp"}:
        raise ValueError(f"trunk {i}: must be an object with name, sources, username, register, srtp")
    name, sources, username = item.get("name"), item.get("sources", []), item.get("username", "")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"trunk {i}: needs a name (letters, digits, - _ .)")
    if not isinstance(username, str):
        raise ValueError(f"trunk {name}: username must be a string")
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise ValueError(f"trunk {name}: sources must be a list of address ranges")
    try:
        nets = tuple(ipaddress.ip_network(s.strip(), strict=False) for s in sources)
    except ValueError:
        raise ValueError(f"trunk {name}: sources must be IP addresses or CIDR ranges") from None
    register = _register(item["register"], name) if "register" in item else None
    if not nets and not username and register is None:
        raise ValueError(f"trunk {name}: needs sources, a username, a register, or more than one")
    if any(net.prefixlen == 0 for net in nets) and not username:
        raise ValueError(f"trunk {name}: a source range of every address needs a username as well")
    srtp = item.get("srtp", "optional")
    if srtp not in SRTP_MODES:
        raise ValueError(f"trunk {name}: srtp must be one of {', '.join(SRTP_MODES)}")
    return Trunk(name, nets, username, register, srtp)


_REGISTER_KEYS = {"registrar", "user", "auth_user", "domain", "expires", "keepalive_s"}


def _register(item: object, name: str) -> Register:
    if not isinstance(item, dict) or set(item) - _REGISTER_KEYS:
        raise ValueError(f"trunk {name}: register must be an object with {', '.join(sorted(_REGISTER_KEYS))}")
    strings = {k: item.get(k, "") for k in ("registrar", "user", "auth_user", "domain")}
    if not all(isinstance(v, str) for v in strings.values()):
        raise ValueError(f"trunk {name}: register's registrar, user, auth_user and domain are strings")
    try:
        uri = SipURI.parse(strings["registrar"])
    except ParseError:
        uri = None
    if uri is None or uri.scheme not in ("sip", "sips") or uri.user:
        raise ValueError(f"trunk {name}: register.registrar must be a sip: or sips: URI without a user")
    if uri.transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"trunk {name}: register.registrar's transport must be udp, tcp or tls")
    if not strings["user"] or not all(c.isalnum() or c in "-_.+" for c in strings["user"]):
        raise ValueError(f"trunk {name}: register.user must be a SIP user name (letters, digits, - _ . +)")
    expires, keepalive = item.get("expires", 300), item.get("keepalive_s", 25.0)
    if not isinstance(expires, int) or isinstance(expires, bool) or not 1 <= expires <= 86400:
        raise ValueError(f"trunk {name}: register.expires must be 1-86400 seconds")
    if not isinstance(keepalive, int | float) or isinstance(keepalive, bool) or not 0 <= keepalive <= 3600:
        raise ValueError(f"trunk {name}: register.keepalive_s must be 0-3600 seconds")
    return Register(
        strings["registrar"],
        strings["user"],
        strings["auth_user"],
        strings["domain"],
        expires,
        float(keepalive),
    )
