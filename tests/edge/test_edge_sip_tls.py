"""SIP over TLS between two of our user agents on 127.0.0.1, with certificates made for the test:
a ``sips:`` call checked against the certificate's name (sips: Contacts both ways), the BYE back
over TLS, a peer whose
certificate the caller cannot verify refused, and the settings that turn TLS on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import (
    CallFailed,
    DialogHandlers,
    IncomingCall,
    Timers,
    UAConfig,
    UserAgent,
    answer,
    offer,
)
from phoneagent.edge.sip.sockets import TlsConfig
from phoneagent.runtime.settings import SettingsError, load
from support.tls import CertFiles, make_certs

TIMERS = Timers(t1=0.05, t2=0.4, t4=0.5)


async def tls_agent(
    certs: CertFiles, *, ca: str | None = None, verify: bool = True, **config: object
) -> UserAgent:
    tls = TlsConfig(
        str(certs.cert), str(certs.key), str(certs.ca) if ca is None else ca, verify_server=verify
    )
    ua = UserAgent(UAConfig(transports=("tls",), tls=tls, timers=TIMERS, **config))  # type: ignore[arg-type]
    await ua.start()
    return ua


async def test_sips_call_over_tls_with_the_bye_back_over_tls(certs: CertFiles) -> None:
    answered: asyncio.Queue[IncomingCall] = asyncio.Queue()
    caller_bye = asyncio.Event()

    async def on_call(call: IncomingCall) -> None:
        assert call.remote_sdp is not None
        await call.answer(answer(call.remote_sdp, ("PCMU",), address="127.0.0.1", port=40002))
        answered.put_nowait(call)

    callee = await tls_agent(certs)
    callee.on_incoming_call = on_call
    caller = await tls_agent(certs, user="caller")
    try:
        port = callee.local_address("TLS")[1]
        dialog = await asyncio.wait_for(
            caller.call(
                f"sips:agent@localhost:{port}",
                offer("127.0.0.1", 40000, ("PCMU",)),
                handlers=DialogHandlers(on_bye=lambda _: caller_bye.set()),
            ),
            5,
        )
        call = await asyncio.wait_for(answered.get(), 5)
        assert call.peer.transport == "TLS"
        assert dialog.peer.transport == "TLS"
        assert call.request.top_via.transport == "TLS"
        assert (
            call.request.contact and call.request.contact.uri.scheme
        ) == "sips"  # a sips: request's Contact
        assert dialog.remote_target.scheme == "sips"  # and the answer's
        assert call.dialog is not None
        await call.dialog.confirmed.wait()
        await call.dialog.bye()  # the callee hangs up: over TLS to the caller's contact
        await asyncio.wait_for(caller_bye.wait(), 5)
    finally:
        await caller.close()
        await callee.close()


async def test_a_certificate_the_caller_cannot_verify_is_refused(certs: CertFiles, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")  # the caller trusts another CA only
    callee = await tls_agent(certs)
    callee.on_incoming_call = lambda call: None
    caller = await tls_agent(certs, ca=str(other.ca), user="caller")
    try:
        port = callee.local_address("TLS")[1]
        with pytest.raises(CallFailed) as failed:
            await asyncio.wait_for(
                caller.call(f"sip:agent@127.0.0.1:{port};transport=tls", offer("127.0.0.1", 40000)), 5
            )
        assert failed.value.status == 503
    finally:
        await caller.close()
        await callee.close()


async def test_a_name_the_certificate_does_not_carry_is_refused(tmp_path: Path) -> None:
    certs = make_certs(tmp_path, names=("pbx.example.com",), ips=("127.0.0.1",))
    callee = await tls_agent(certs)
    callee.on_incoming_call = lambda call: None
    caller = await tls_agent(certs, user="caller")
    try:
        port = callee.local_address("TLS")[1]
        with pytest.raises(CallFailed):  # resolved from "localhost", which the certificate does not name
            await asyncio.wait_for(caller.call(f"sips:agent@localhost:{port}", offer("127.0.0.1", 40000)), 5)
    finally:
        await caller.close()
        await callee.close()


def test_tls_settings_need_certificate_files(certs: CertFiles, tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as missing:
        load(EdgeSettings, sip_transports=["udp", "tls"])
    assert "PA_SIP_TLS_CERT_FILE: required when PA_SIP_TRANSPORTS lists tls" in str(missing.value)
    assert "PA_SIP_TLS_KEY_FILE: required when PA_SIP_TRANSPORTS lists tls" in str(missing.value)
    with pytest.raises(SettingsError, match="PA_SIP_TLS_CERT_FILE: no such file"):
        load(
            EdgeSettings,
            sip_transports=["tls"],
            tls_cert_file=str(tmp_path / "none.pem"),
            tls_key_file=str(certs.key),
        )
    ok = load(
        EdgeSettings,
        sip_transports=["udp", "tls"],
        tls_cert_file=str(certs.cert),
        tls_key_file=str(certs.key),
    )
    assert ok.tls is not None and ok.tls.verify_server and ok.tls_port == 5061
    assert load(EdgeSettings).tls is None


def test_a_trunk_registering_over_a_transport_not_run_is_a_settings_problem() -> None:
    trunks = '[{"name": "pbx", "register": {"registrar": "sips:pbx.example.com", "user": "1001"}}]'
    with pytest.raises(
        SettingsError, match="PA_SIP_TRANSPORTS: trunk pbx registers over tls, which is not listed"
    ):
        load(EdgeSettings, inbound_trunks=trunks)


def test_an_outbound_trunk_over_tls_needs_the_tls_transport(certs: CertFiles) -> None:
    with pytest.raises(SettingsError, match="PA_SIP_TRUNK_URI is reached over tls, which is not listed"):
        load(EdgeSettings, trunk_uri="sips:trunk.example.com")
    with pytest.raises(SettingsError, match="reached over tls"):
        load(EdgeSettings, trunk_uri="sip:trunk.example.com;transport=tls")
    tls = {"sip_transports": ["udp", "tls"], "tls_cert_file": str(certs.cert), "tls_key_file": str(certs.key)}
    assert load(EdgeSettings, trunk_uri="sips:trunk.example.com", **tls).trunk_uri == "sips:trunk.example.com"
