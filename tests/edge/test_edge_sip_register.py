"""Outbound registration against a real registrar (Debian's kamailio): digest, refresh, a
registrar restart, a registrar that is down, wrong credentials, a NAT rewrite of the Contact, and
what the registrar routes to the registered contact reaching the user agent. Whether kamailio
holds our binding is asked the way a caller would: an OPTIONS to the user, which kamailio routes
to the contact (our user agent answers 200) or answers 404 itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from phoneagent.edge.sip import Timers, UAConfig, UserAgent
from phoneagent.edge.sip.registration import Registration, RegState, refresh_after
from phoneagent.edge.sip.sockets import TlsConfig
from phoneagent.edge.sip.trunks import Trunk, TrunkTable, parse_trunks
from phoneagent.runtime.retry import RetryPolicy
from prometheus_client import REGISTRY
from support import kamailio
from support.common import wait_for
from support.kamailio import Kamailio, running_kamailio
from support.tls import make_certs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not kamailio.available(), reason="kamailio is not installed (apt-get kamailio)"),
]
EXPIRES = 4  # seconds asked for: a refresh every 2 s
FAST = RetryPolicy(retries=0, backoff_s=0.2, max_backoff_s=0.5)


def trunk(kam: Kamailio, transport: str, name: str = "pbx", **extra: object) -> Trunk:
    register = {
        "registrar": f"{kam.uri};transport={transport}",
        "user": kamailio.USER,
        "expires": EXPIRES,
        "keepalive_s": 1,
        **extra,
    }
    return parse_trunks(json.dumps([{"name": name, "register": register}]))[0]


@pytest.fixture
async def kam(tmp_path: Path) -> AsyncIterator[Kamailio]:
    async with running_kamailio(tmp_path) as k:
        yield k


async def user_agent(trunks: TrunkTable, **config: object) -> UserAgent:
    config.setdefault("transports", ("udp", "tcp"))
    ua = UserAgent(UAConfig(trunks=trunks, timers=Timers(t1=0.05), **config))  # type: ignore[arg-type]
    await ua.start()
    return ua


async def probe(kam: Kamailio) -> int:
    """The status of an OPTIONS to the user through kamailio: 200 from our UA at the registered
    contact, 404 from kamailio when it holds no binding."""
    ua = await user_agent(TrunkTable([]), transports=("udp",))  # UDP only: a TCP bind could meet
    # the local port of a connection the UA under test holds
    try:
        resp = await ua.options(f"sip:{kamailio.USER}@127.0.0.1:{kam.port}")
    finally:
        await ua.close()
    return resp.status


async def reachable(kam: Kamailio) -> bool:
    """Whether kamailio routes a request for the user to a contact that answers (our UA)."""
    return await probe(kam) == 200


async def eventually_reachable(kam: Kamailio, timeout: float) -> float:
    """Seconds until kamailio routes to us (probing every 0.1 s); fails after ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await reachable(kam):
        assert loop.time() - start < timeout, f"not registered again within {timeout}s"
        await asyncio.sleep(0.1)
    return loop.time() - start


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_registers_refreshes_and_registers_again_after_a_registrar_restart(
    kam: Kamailio, transport: str
) -> None:
    t = trunk(kam, transport, name=f"restart-{transport}")
    table = TrunkTable([t])
    ua = await user_agent(table)
    reg = Registration(ua, t, kamailio.PASSWORD, table=table, backoff=FAST)
    assert table.for_source("127.0.0.1") == []  # nothing admitted before the registration holds
    reg.start()
    try:
        await wait_for(lambda: reg.state is RegState.REGISTERED, timeout=5)
        assert reg.status()["transport"] == transport.upper()
        assert await reachable(kam)
        assert table.for_source("127.0.0.1") == [t]  # the registrar's flow now calls in as the trunk
        assert metric("pa_edge_sip_registered", trunk=t.name) == 1.0
        before = reg.registrations
        await wait_for(lambda: reg.registrations >= before + 2, timeout=2 * EXPIRES)  # refreshed

        await kam.restart()  # the registrar forgets every binding (they live in its memory only)
        took = await eventually_reachable(kam, timeout=refresh_after(EXPIRES) + 1.0)
        assert took <= refresh_after(EXPIRES) + 1.0
        assert reg.state is RegState.REGISTERED
        if transport == "tcp":  # the closed connection was noticed, not waited out
            assert metric("pa_edge_sip_registration_failures_total", trunk=t.name, reason="flow_lost") >= 1
    finally:
        await reg.stop()
        await ua.close()
    assert await probe(kam) == 404  # stop() removed the binding (answering kamailio's challenge)
    assert metric("pa_edge_sip_registered", trunk=t.name) == 0.0


async def test_registrar_down_backs_off_then_registers_when_it_comes_back(kam: Kamailio) -> None:
    t = trunk(kam, "tcp", name="down")
    table = TrunkTable([t])
    ua = await user_agent(table)
    await kam.stop()
    reg = Registration(ua, t, kamailio.PASSWORD, table=table, backoff=FAST)
    reg.start()
    try:
        await wait_for(lambda: reg.failures >= 2, timeout=5)
        assert reg.state is RegState.FAILED
        assert reg.status()["state"] == "failed"
        assert metric("pa_edge_sip_registration_failures_total", trunk="down", reason="transport") >= 2
        await kam.start()
        await wait_for(lambda: reg.state is RegState.REGISTERED, timeout=5)
        assert reg.failures == 0
        assert await reachable(kam)
    finally:
        await reg.stop()
        await ua.close()


async def test_wrong_password_fails_as_auth_failed_and_admits_nothing(kam: Kamailio) -> None:
    t = trunk(kam, "udp", name="badauth")
    table = TrunkTable([t])
    ua = await user_agent(table)
    reg = Registration(ua, t, "not-the-password", table=table, backoff=FAST)
    reg.start()
    try:
        await wait_for(lambda: reg.failures >= 2, timeout=5)
        assert reg.last_status == 401
        assert metric("pa_edge_sip_registration_failures_total", trunk="badauth", reason="auth_failed") >= 2
        assert table.for_source("127.0.0.1") == []
        assert not await reachable(kam)
    finally:
        await reg.stop()
        await ua.close()


async def test_contact_takes_the_address_the_registrar_saw(kam: Kamailio) -> None:
    """Behind a NAT the UA's own address is not where the registrar can reach it: here the UA
    advertises an unroutable address (TEST-NET-1); kamailio answers with received/rport, the UA
    registers that address instead (removing the first binding) and is reachable through it."""
    t = trunk(kam, "udp", name="nat")
    table = TrunkTable([t])
    ua = await user_agent(table, advertised_host="192.0.2.10")
    reg = Registration(ua, t, kamailio.PASSWORD, table=table, backoff=FAST)
    reg.start()
    try:
        await wait_for(lambda: reg.state is RegState.REGISTERED, timeout=5)
        assert reg.status()["contact"] == f"127.0.0.1:{ua.local_address()[1]}"
        assert await reachable(kam)
        before = reg.registrations
        await wait_for(lambda: reg.registrations > before, timeout=2 * EXPIRES)  # a refresh keeps it
        assert reg.status()["contact"] == f"127.0.0.1:{ua.local_address()[1]}"
        assert await reachable(kam)
    finally:
        await reg.stop()
        await ua.close()


class UdpNat:
    """A NAT in front of the registrar for UDP: what the UA sends to ``inside`` leaves from an outside
    socket, and what reaches that socket (responses, requests routed to the UA's contact) is passed
    back to the UA. :meth:`rebind` gives the mapping a new outside port, as a NAT does when its
    binding expired and the UA sends again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.ua: tuple[str, int] | None = None
        self.inside: asyncio.DatagramTransport | None = None
        self.outside: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.inside, _ = await loop.create_datagram_endpoint(
            lambda: _Relay(self._from_ua), local_addr=("127.0.0.1", 0)
        )
        await self.rebind()

    async def rebind(self) -> None:
        if self.outside is not None:
            self.outside.close()
        self.outside, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Relay(self._from_outside), local_addr=("127.0.0.1", 0)
        )

    @property
    def port(self) -> int:
        assert self.inside is not None
        return int(self.inside.get_extra_info("sockname")[1])

    @property
    def outside_port(self) -> int:
        assert self.outside is not None
        return int(self.outside.get_extra_info("sockname")[1])

    def _from_ua(self, data: bytes, addr: tuple[str, int]) -> None:
        self.ua = addr
        if self.outside is not None:
            self.outside.sendto(data, self.target)

    def _from_outside(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.inside is not None and self.ua is not None:
            self.inside.sendto(data, self.ua)

    def close(self) -> None:
        for sock in (self.inside, self.outside):
            if sock is not None:
                sock.close()


class _Relay(asyncio.DatagramProtocol):
    def __init__(self, on_data: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_data = on_data

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.on_data(data, addr)


async def test_a_nat_binding_that_expires_is_noticed_by_the_keepalive_and_registered_again(
    kam: Kamailio,
) -> None:
    """The registration asks for 60 s (its refresh is 30 s away); the NAT's mapping changes; the
    next OPTIONS keep-alive (every second) comes back with another rport, and the UA registers its
    new outside address at once."""
    nat = UdpNat(("127.0.0.1", kam.port))
    await nat.start()
    register = {
        "registrar": f"sip:127.0.0.1:{nat.port}",
        "user": kamailio.USER,
        "expires": 60,
        "keepalive_s": 1,
    }
    (t,) = parse_trunks(json.dumps([{"name": "natexpiry", "register": register}]))
    table = TrunkTable([t])
    ua = await user_agent(table)
    reg = Registration(ua, t, kamailio.PASSWORD, table=table, backoff=FAST)
    reg.start()
    try:
        await wait_for(lambda: reg.state is RegState.REGISTERED, timeout=5)
        assert reg.status()["contact"] == f"127.0.0.1:{nat.outside_port}"  # the address the registrar saw
        assert await reachable(kam)
        await nat.rebind()
        # well before the 30 s refresh (a probe sent to the dead mapping may itself take 3 s to time out)
        await eventually_reachable(kam, timeout=10.0)
        assert reg.status()["contact"] == f"127.0.0.1:{nat.outside_port}"
        assert (
            metric("pa_edge_sip_registration_failures_total", trunk="natexpiry", reason="nat_rebinding") >= 1
        )
    finally:
        await reg.stop()
        await ua.close()
        nat.close()


@pytest.mark.skipif(not kamailio.available(tls=True), reason="kamailio's TLS module is not installed")
async def test_registers_over_tls_at_a_sips_registrar_and_is_reached_over_tls(tmp_path: Path) -> None:
    """``sips:`` registrar: the UA checks kamailio's certificate (the test's CA), registers a sips:
    Contact, and what kamailio routes to it arrives on the UA's TLS listener."""
    certs = make_certs(tmp_path / "certs")
    async with running_kamailio(tmp_path, tls=(certs.cert, certs.key)) as kam:
        register = {"registrar": f"sips:127.0.0.1:{kam.tls_port}", "user": kamailio.USER, "expires": EXPIRES}
        (t,) = parse_trunks(json.dumps([{"name": "tls", "register": register}]))
        table = TrunkTable([t])
        tls = TlsConfig(str(certs.cert), str(certs.key), str(certs.ca))
        ua = await user_agent(table, transports=("tls",), tls=tls)
        reg = Registration(ua, t, kamailio.PASSWORD, table=table, backoff=FAST)
        reg.start()
        try:
            await wait_for(lambda: reg.state is RegState.REGISTERED, timeout=5)
            assert reg.status()["transport"] == "TLS"
            before = reg.registrations
            await wait_for(lambda: reg.registrations > before, timeout=2 * EXPIRES)  # refreshed over TLS
            assert await reachable(kam)  # kamailio relays the probe to our sips: contact
            assert ua.transports["TLS"].inbound_connections >= 1  # it came in on the TLS listener
        finally:
            await reg.stop()
            await ua.close()


@pytest.mark.skipif(not kamailio.available(tls=True), reason="kamailio's TLS module is not installed")
async def test_a_registrar_whose_certificate_does_not_verify_is_not_registered_with(tmp_path: Path) -> None:
    certs, other = make_certs(tmp_path / "certs"), make_certs(tmp_path / "other")
    async with running_kamailio(tmp_path, tls=(certs.cert, certs.key)) as kam:
        register = {"registrar": f"sips:127.0.0.1:{kam.tls_port}", "user": kamailio.USER, "expires": EXPIRES}
        (t,) = parse_trunks(json.dumps([{"name": "tls-untrusted", "register": register}]))
        table = TrunkTable([t])
        tls = TlsConfig(str(other.cert), str(other.key), str(other.ca))  # trusts another CA only
        ua = await user_agent(table, transports=("tls",), tls=tls)
        reg = Registration(ua, t, kamailio.PASSWORD, table=table, backoff=FAST)
        reg.start()
        try:
            await wait_for(lambda: reg.failures >= 2, timeout=5)
            assert reg.state is RegState.FAILED
            assert (
                metric("pa_edge_sip_registration_failures_total", trunk="tls-untrusted", reason="transport")
                >= 2
            )
            assert not await reachable(kam)
        finally:
            await reg.stop()
            await ua.close()
