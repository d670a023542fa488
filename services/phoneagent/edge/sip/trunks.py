"""Who may call in: inbound trunks (source address ranges and/or digest credentials) and a
per-source INVITE rate limit.

A trunk names the address ranges its INVITEs come from, the digest user it authenticates as,
or both (then both must hold). An INVITE whose source matches no trunk is refused before any call
state exists; a source that matches only trunks with credentials must authenticate as one of them.
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

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Trunk:
    name: str
    sources: tuple[Network, ...] = ()  # empty: any source (then a username is required)
    username: str = ""  # digest user the trunk must authenticate as; empty: no digest
    srtp: str = "optional"  # SRTP policy for its calls: off, optional (when offered), required

    def matches(self, source: str) -> bool:
        if not self.sources:
            return True
        try:
            addr = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(addr in net for net in self.sources)


class TrunkTable:
    """The configured trunks; :meth:`for_source` says which ones an INVITE may come from."""

    def __init__(self, trunks: Iterable[Trunk]) -> None:
        self.trunks = tuple(trunks)

    def for_source(self, source: str) -> list[Trunk]:
        return [t for t in self.trunks if t.matches(source)]

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
    "srtp": "required"}]``.

    Raises ValueError naming what is wrong. Each trunk needs a unique name and sources, a
    username, or both; a source range that admits every address must come with a username.
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
    if not isinstance(item, dict) or set(item) - {"name", "sources", "username", "srtp"}:
        raise ValueError(f"trunk {i}: must be an object with name, sources and/or username (and srtp)")
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
    if not nets and not username:
        raise ValueError(f"trunk {name}: needs sources, a username, or both")
    if any(net.prefixlen == 0 for net in nets) and not username:
        raise ValueError(f"trunk {name}: a source range of every address needs a username as well")
    srtp = item.get("srtp", "optional")
    if srtp not in SRTP_MODES:
        raise ValueError(f"trunk {name}: srtp must be one of {', '.join(SRTP_MODES)}")
    return Trunk(name, nets, username, srtp)
