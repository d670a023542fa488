"""The edge service registers a trunk at kamailio (settings only: PA_SIP_INBOUND_TRUNKS with
``register``, PA_SIP_REGISTER_PASSWORDS), shows it in its /readyz detail and metrics, and a call
that baresip places to the trunk's user through kamailio reaches the agent. The trunk lists no
source addresses: the call is admitted because it comes over the registration's flow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime import subjects
from phoneagent.runtime.settings import load
from phoneagent.v1 import media_pb2
from prometheus_client import REGISTRY
from support import baresip, kamailio
from support.common import wait_for
from support.edge import running_edge
from support.kamailio import running_kamailio
from support.sip_phone import band_energy, collect, tone

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not kamailio.available(), reason="kamailio is not installed (apt-get kamailio)"),
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed (apt-get baresip)"),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_call_routed_by_the_registrar_reaches_the_agent(
    nats_url: str, tmp_path: Path, transport: str
) -> None:
    async with running_kamailio(tmp_path) as kam:
        register = {"registrar": f"{kam.uri};transport={transport}", "user": kamailio.USER, "expires": 60}
        settings = load(
            EdgeSettings,
            sip_port=0,
            rtp_port_min=44000,
            rtp_port_max=44999,
            web_enabled=False,
            inbound_trunks=json.dumps([{"name": "office", "register": register}]),
            register_passwords=json.dumps({"office": kamailio.PASSWORD}),
        )
        assert settings.validate() == []
        async with running_edge(nats_url, settings, tag=f"reg-{transport}") as edge:
            svc = edge.svc
            await wait_for(
                lambda: svc.status()["registrations"]["office"]["state"] == "registered",  # type: ignore[index]
                timeout=10,
            )
            detail = svc.status()["registrations"]["office"]  # type: ignore[index]
            assert detail["transport"] == transport.upper() and detail["expires_in_s"] > 30
            assert REGISTRY.get_sample_value("pa_edge_sip_registered", {"trunk": "office"}) == 1.0

            wav = baresip.write_wav(tmp_path / "in.wav", tone(440, 8000 * 20))
            conf = baresip.write_config(tmp_path / "conf", wav)
            proc = await baresip.dial(conf, f"sip:{kamailio.USER}@127.0.0.1:{kam.port}", seconds=6)
            try:
                started = await wait_for(lambda: edge.lifecycle("started"), timeout=10)
                call_id = started[0].meta.call_id
                audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
                await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
                await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=15)
                loud = [p for f in audio if np.abs(p := np.frombuffer(f.pcm, "<i2")).max() > 1000]
                assert len(loud) >= 50, len(loud)
                assert band_energy(np.concatenate(loud[10:60]), 16000, 440) > 0.8
            finally:
                print((await baresip.finish(proc))[-3000:])
        # torn down: the edge removed its binding and reports it is no longer registered
        assert REGISTRY.get_sample_value("pa_edge_sip_registered", {"trunk": "office"}) == 0.0
