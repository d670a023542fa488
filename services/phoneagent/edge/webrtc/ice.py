"""Which host addresses aiortc offers as ICE candidates.

aioice gathers a candidate on every interface address except loopback, and has no option
to choose. The gateway pins the list (PA_WEB_ICE_ADDRESSES; 127.0.0.1 for the local stack)
by replacing aioice's address lookup for this process: the edge's only ICE user.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

_original: Callable[[bool, bool], list[str]] | None = None


def pin_host_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly ``addresses`` as host candidates; an empty list restores aioice's lookup."""
    import aioice.ice

    global _original
    if _original is None:
        _original = aioice.ice.get_host_addresses
    if not addresses:
        aioice.ice.get_host_addresses = _original  # type: ignore[assignment]
        return
    pinned = [str(ipaddress.ip_address(a)) for a in addresses]

    def pinned_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = pinned_addresses  # type: ignore[assignment]
