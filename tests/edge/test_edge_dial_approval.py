"""The edge dials only what policy approved: a one-time approval in pa_dial_approvals, named by
the request's dial_decision_id, signed with policy's key for this call and this number, not
expired; anything else is refused (fail closed) and no INVITE goes out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from phoneagent.edge.service import EdgeService
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import IncomingCall, UAConfig, UserAgent
from phoneagent.runtime import approvals, streams, subjects
from phoneagent.runtime.approvals import Signer
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.dial_approvals import NOT_APPROVED, dial_key
from phoneagent.runtime.errors import ErrorKind
from phoneagent.runtime.metrics import DIALS_REFUSED
from phoneagent.runtime.natsserver import NatsServer
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, policy_pb2
from support.common import approve_dial, signed, wait_for
from support.edge import Edge, running_edge

HOST = "127.0.0.1"


def _settings() -> EdgeSettings:
    return load(EdgeSettings, sip_port=0, rtp_port_min=49000, rtp_port_max=49199, web_enabled=False)


class BusyCallee:
    """A SIP phone that counts the INVITEs it gets and answers each with 486 Busy Here."""

    def __init__(self) -> None:
        self.invites = 0
        self.ua = UserAgent(UAConfig(host=HOST, port=0, user="callee"), on_incoming_call=self.on_call)

    async def on_call(self, inc: IncomingCall) -> None:
        self.invites += 1
        await inc.reject(486)

    @property
    def uri(self) -> str:
        return f"sip:callee@{HOST}:{self.ua.local_address()[1]}"


@pytest.fixture
async def edge(nats_url: str) -> AsyncIterator[Edge]:
    async with running_edge(nats_url, _settings(), tag="approve") as edge:
        yield edge


@pytest.fixture
async def callee() -> AsyncIterator[BusyCallee]:
    c = BusyCallee()
    await c.ua.start()
    yield c
    await c.ua.close()


def _request(to: str, decision_id: str = "", call_id: str = "") -> call_pb2.CallStarted:
    return call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id or subjects.new_call_id()),
        to_uri=to,
        dial_decision_id=decision_id,
    )


async def _store(bus: Bus, approval: policy_pb2.Approval) -> str:
    """Put ``approval`` into the bucket as policy stores one (anything on the bus can write it)."""
    kv = await streams.dial_approvals_kv(bus.jetstream())
    value = {"approval": approvals.encode_approval(approval), "campaign_id": ""}
    await kv.put(approval.decision_id, json.dumps(value).encode())
    return approval.decision_id


async def _ask(bus: Bus, req: call_pb2.CallStarted) -> control_pb2.ControlEvent:
    return await bus.request(subjects.edge_dial(), req, control_pb2.ControlEvent, timeout=5)


def _refused(edge: Edge, req: call_pb2.CallStarted, reply: control_pb2.ControlEvent, why: str) -> bool:
    return (
        reply.WhichOneof("kind") == "error"
        and reply.error.message.startswith(NOT_APPROVED)
        and why in reply.error.message
        and ErrorKind.from_wire(reply.error.kind) == ErrorKind.POLICY_DENIED
        and not reply.error.retryable
        and req.meta.call_id not in edge.svc.calls
        and not edge.lifecycle("started", req.meta.call_id)
    )


def _refusals(reason: str) -> float:
    return DIALS_REFUSED.labels(reason=reason)._value.get()


async def test_dial_without_approval_is_refused(edge: Edge, callee: BusyCallee) -> None:
    before = _refusals("missing"), _refusals("unknown")
    req = _request(callee.uri)
    assert _refused(edge, req, await _ask(edge.bus, req), "no decision id")
    forged = _request(callee.uri, "0123456789abcdef0123456789abcdef")  # well-formed, never approved
    assert _refused(edge, forged, await _ask(edge.bus, forged), "no such approval")
    assert (_refusals("missing"), _refusals("unknown")) == (before[0] + 1, before[1] + 1)
    assert callee.invites == 0


async def test_approval_for_another_number_is_refused(edge: Edge, callee: BusyCallee) -> None:
    call_id = subjects.new_call_id()
    other = await approve_dial(edge.bus, call_id, f"sip:someone-else@{HOST}:5099")
    req = _request(callee.uri, other, call_id)
    before = _refusals("mismatch")
    assert _refused(edge, req, await _ask(edge.bus, req), "another number")
    assert _refusals("mismatch") == before + 1
    assert callee.invites == 0


async def test_approval_for_another_call_is_refused(edge: Edge, callee: BusyCallee) -> None:
    decision_id = await approve_dial(edge.bus, subjects.new_call_id(), callee.uri)
    req = _request(callee.uri, decision_id)  # a call id of its own
    before = _refusals("wrong_call")
    assert _refused(edge, req, await _ask(edge.bus, req), "another call")
    assert _refusals("wrong_call") == before + 1
    assert callee.invites == 0


async def test_forged_approvals_are_refused(edge: Edge, callee: BusyCallee) -> None:
    """Unsigned (the old, plain form), signed with another key, altered after signing, expired."""
    kv = await streams.dial_approvals_kv(edge.bus.jetstream())
    cases: list[tuple[str, str, str, str]] = []  # (call id, decision id, reason, detail)

    call_id = subjects.new_call_id()
    await kv.put("plain0123456789", json.dumps({"number": callee.uri, "campaign_id": ""}).encode())
    cases.append((call_id, "plain0123456789", "unsigned", "no signed approval"))

    call_id = subjects.new_call_id()
    mallory = Signer.generate()
    cases.append(
        (
            call_id,
            await approve_dial(edge.bus, call_id, callee.uri, signer=mallory),
            "unknown_key",
            "unknown key",
        )
    )

    call_id = subjects.new_call_id()
    tampered = signed(approvals.DIAL, subjects.new_call_id(), callee.uri)
    tampered.call_id = call_id  # moved onto this call: the signature no longer matches
    cases.append((call_id, await _store(edge.bus, tampered), "bad_signature", "bad signature"))

    call_id = subjects.new_call_id()
    expired = signed(approvals.DIAL, call_id, callee.uri, ttl_s=-1)
    cases.append((call_id, await _store(edge.bus, expired), "expired", "expired"))

    for call_id, decision_id, reason, detail in cases:
        before = _refusals(reason)
        req = _request(callee.uri, decision_id, call_id)
        assert _refused(edge, req, await _ask(edge.bus, req), detail), reason
        assert _refusals(reason) == before + 1, reason
    assert callee.invites == 0


async def test_approved_dial_is_placed_once(edge: Edge, callee: BusyCallee) -> None:
    call_id = subjects.new_call_id()
    decision_id = await approve_dial(edge.bus, call_id, callee.uri)
    first = _request(callee.uri, decision_id, call_id)
    reply = await _ask(edge.bus, first)
    assert reply.WhichOneof("kind") is None, reply
    ended = await wait_for(lambda: edge.ended(first.meta.call_id), timeout=5)
    assert ended[0].reason == call_pb2.END_REASON_BUSY and callee.invites == 1
    # the same approval a second time: for the same call it is marked used (the edge does not
    # delete approvals, it may only write pa_dial_approvals_used); for another call, not policy's
    started = len(edge.lifecycle("started", call_id))
    again = _request(callee.uri, decision_id, call_id)
    reply = await _ask(edge.bus, again)
    assert reply.WhichOneof("kind") == "error" and "already used" in reply.error.message, reply
    assert ErrorKind.from_wire(reply.error.kind) == ErrorKind.POLICY_DENIED
    assert call_id not in edge.svc.calls and len(edge.lifecycle("started", call_id)) == started
    other = _request(callee.uri, decision_id)
    assert _refused(edge, other, await _ask(edge.bus, other), "another call")
    assert callee.invites == 1


@pytest.fixture
def nats_without_jetstream(tmp_path: Path) -> Iterator[str]:
    """A real nats-server with JetStream off: the approvals bucket cannot be read. The server picks
    its own port (a port probed free and handed over later can be taken in between)."""
    server = NatsServer(tmp_path / "nats", jetstream=False)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


async def test_unreadable_approvals_refuse_the_dial(nats_without_jetstream: str) -> None:
    svc = EdgeService(load(CommonSettings, nats_url=nats_without_jetstream), _settings())
    client = Bus("approve-client")
    await svc.bus.connect(nats_without_jetstream)
    await client.connect(nats_without_jetstream)
    await svc.setup()
    try:
        before = _refusals("unavailable")
        req = _request("sip:callee@127.0.0.1:5099", "0123456789abcdef0123456789abcdef")
        reply = await _ask(client, req)
        assert reply.WhichOneof("kind") == "error" and reply.error.message.startswith(NOT_APPROVED)
        assert "could not be read" in reply.error.message and req.meta.call_id not in svc.calls
        assert _refusals("unavailable") == before + 1
    finally:
        await svc.bus.drain(timeout=2.0)
        await svc.teardown()
        await client.close()


async def test_lab_setting_turns_the_check_off(nats_url: str, callee: BusyCallee) -> None:
    settings = load(
        EdgeSettings,
        sip_port=0,
        rtp_port_min=49200,
        rtp_port_max=49299,
        web_enabled=False,
        require_dial_approval=False,
    )
    async with running_edge(nats_url, settings, tag="approve-lab") as edge:
        req = _request(callee.uri)
        assert (await _ask(edge.bus, req)).WhichOneof("kind") is None
        await wait_for(lambda: edge.ended(req.meta.call_id), timeout=5)
        assert callee.invites == 1


def test_dial_key_compares_numbers_by_digits_and_uris_as_written() -> None:
    assert dial_key(" tel:+1 (212) 555-0123 ") == dial_key("+12125550123") == "+12125550123"
    assert dial_key("2125550123") != dial_key("+12125550123")
    assert dial_key("sip:a@127.0.0.1:5060") == "sip:a@127.0.0.1:5060"
    assert dial_key("sip:a@127.0.0.1:5060") != dial_key("sip:b@127.0.0.1:5060")
