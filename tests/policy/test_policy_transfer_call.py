"""An operator's TransferCall from end to end: the records service's API asks the running policy
service, which approves only the agent's allow-listed human; the real edge (SIP on 127.0.0.1)
transfers the caller there with policy's approval. A target policy does not approve is refused
at the API and never rings, and a Transfer published on the bus without the API is refused by
the edge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import CallFailed, Dialog, DialogHandlers, IncomingCall, SipURI, answer, offer
from phoneagent.records.service import RecordsService
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Lane
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import call_pb2, common_pb2, control_api_pb2, control_api_pb2_grpc, control_pb2
from support.common import wait_for
from support.edge import Edge, running_edge
from support.policy_stack import running_policy, running_records
from support.sip_phone import HOST, Peer, collect, kinds, new_peer

pytestmark = pytest.mark.slow
TOKEN = "transfer-call-token-0123"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


@dataclass
class Phones:
    human: Peer  # on the agent's allow-list
    stranger: Peer  # anyone else
    rang: dict[str, int]


def uri(peer: Peer, user: str) -> str:
    host, port = peer.ua.local_address()
    return f"sip:{user}@{host}:{port}"


async def phone(name: str, rang: dict[str, int]) -> Peer:
    """A phone that counts its calls and answers them."""
    holder: dict[str, Peer] = {}

    async def on_call(inc: IncomingCall) -> None:
        rang[name] = rang.get(name, 0) + 1
        p = holder["peer"]
        assert inc.remote_sdp is not None
        local = answer(inc.remote_sdp, address=HOST, port=p.rtp.port)
        p.media(await inc.answer(local, p.handlers()), local)

    holder["peer"] = await new_peer(on_call)
    return holder["peer"]


@pytest.fixture
async def phones() -> AsyncIterator[Phones]:
    rang: dict[str, int] = {}
    human, stranger = await phone("human", rang), await phone("stranger", rang)
    yield Phones(human, stranger, rang)
    await human.close()
    await stranger.close()


@pytest.fixture
async def stack(nats_url: str, tmp_path: Path, phones: Phones) -> AsyncIterator[tuple[Edge, RecordsService]]:
    """Policy with an agent whose allow-list names the human, the records API, the real edge."""
    example = load(CommonSettings).agent_path
    raw = yaml.safe_load(example.read_text(encoding="utf-8"))
    raw["knowledge"] = [str(example.parent / k) for k in raw.get("knowledge", [])]
    raw["transfer"]["allowed_targets"] = [uri(phones.human, "human")]
    agent = tmp_path / "agent.yaml"
    agent.write_text(yaml.safe_dump(raw))
    common = {"replica_id": "policy-transfer-call-t", "agent_file": str(agent)}
    settings = load(EdgeSettings, sip_port=0, rtp_port_min=46000, rtp_port_max=46199, web_enabled=False)
    async with (
        running_policy(nats_url, tmp_path / "policy.sqlite3", common=common),
        running_records(
            nats_url, tmp_path / "records.sqlite3", replica_id="records-tc-t", api_token=TOKEN
        ) as rec,
        running_edge(nats_url, settings, tag="transfer-call", stages=("asr", "llm", "tts")) as edge,
    ):
        yield edge, rec


async def caller(edge: Edge) -> tuple[Peer, str, list[Dialog]]:
    """A caller on a call with the edge whose phone follows a REFER by calling the target."""
    peer = await new_peer()
    legs: list[Dialog] = []

    async def on_refer(_: Dialog, target: SipURI) -> int:
        try:
            legs.append(await peer.ua.call(target, offer(HOST, 42996), timeout_s=5))
        except CallFailed as exc:
            return exc.status
        return 200

    local = offer(HOST, peer.rtp.port)
    before = {s.meta.call_id for s in edge.lifecycle("started")}
    dialog = await peer.ua.call(
        f"sip:+14155550134@{HOST}:{edge.port}",
        local,
        handlers=DialogHandlers(on_bye=lambda _: peer.bye.set(), on_refer=on_refer),
    )
    peer.media(dialog, local)
    (started,) = [s for s in edge.lifecycle("started") if s.meta.call_id not in before]
    await wait_for(lambda: edge.lifecycle("answered", started.meta.call_id), timeout=5)
    return peer, started.meta.call_id, legs


async def test_transfer_call_reaches_only_the_approved_human(
    stack: tuple[Edge, RecordsService], phones: Phones
) -> None:
    edge, records = stack
    peer, call_id, legs = await caller(edge)
    control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{records.grpc_port}")
    api = control_api_pb2_grpc.CallControlStub(channel)
    assert records.records is not None
    store = records.records
    try:
        await wait_for(lambda: (r := store.get(call_id)) is not None and r.started_unix_ns > 0, timeout=10)
        transfer = control_api_pb2.TransferCallRequest
        # Someone not on the allow-list: refused by the API, nobody rings.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.TransferCall(transfer(call_id=call_id, target=uri(phones.stranger, "x")), metadata=AUTH)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Straight onto the bus, past the API and policy: the edge refuses it.
        forged = control_pb2.ControlEvent(
            meta=common_pb2.EventMeta(call_id=call_id),
            transfer=control_pb2.Transfer(
                target=uri(phones.stranger, "x"), kind=control_pb2.TRANSFER_KIND_BLIND
            ),
        )
        await edge.bus.publish(subjects.control(call_id), forged, lane=Lane.CONTROL)
        refused = await wait_for(lambda: kinds(control, "transfer_result"), timeout=5)
        assert not refused[0].ok and "not approved by policy" in refused[0].detail
        assert not phones.rang and not legs
        # The allow-listed human: approved, and the caller is put through.
        await api.TransferCall(transfer(call_id=call_id, target=uri(phones.human, "human")), metadata=AUTH)
        done = await wait_for(lambda: kinds(control, "transfer_result")[1:], timeout=10)
        assert done[0].ok and done[0].detail == "sip 200"
        assert phones.rang == {"human": 1} and len(legs) == 1
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_TRANSFERRED
    finally:
        for leg in legs:
            await leg.bye()
        await channel.close()
        await peer.close()
