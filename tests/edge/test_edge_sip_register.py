"""Outbound registration against a real registrar (Debian's kamailio): digest, refresh, a
registrar restart, a registrar that is down, wrong credentials, a NAT rewrite of the Contact, and
what the registrar routes to the registered contact reaching the user agent. Whether kamailio
holds our binding is asked the way a caller would: an OPTIONS to the user, which kamailio routes
to the contact (our user agent answers 200) or answers 404 itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from phoneagent.edge.sip import Timers, UAConfig, UserAgent
from phoneagent.edge.sip.registration import Registration, RegState, refresh_after
from phoneagent.edge.sip.trunks import Trunk, TrunkTable, parse_trunks
from phoneagent.runtime.retry import RetryPolicy
from prometheus_client import REGISTRY
from support import kamailio
from support.common import wait_for
from support.kamailio import Kamailio, running_kamailio

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
    ua = UserAgent(
        UAConfig(transports=("udp", "tcp"), trunks=trunks, timers=Timers(t1=0.05), **config)  # type: ignore[arg-type]
    )
    await ua.start()
    return ua


async def reachable(kam: Kamailio) -> bool:
    """Whether kamailio routes a request for the user to a contact that answers (our UA)."""
    probe = await user_agent(TrunkTable([]))
    try:
        resp = await probe.options(f"sip:{kamailio.USER}@127.0.0.1:{kam.port}")
    finally:
        await probe.close()
    return resp.status == 200


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
    assert not await reachable(kam)  # stop() removed the binding
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
