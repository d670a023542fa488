"""A campaign end to end: ``phone-agent campaign start`` (its own process) asks the real policy
service about each number, has the real edge service dial it over SIP through a trunk, follows
each call to its end and writes the results. The trunk is our own SIP user agent on 127.0.0.1:
one number answers, one is busy (486, retried, then reported busy), one is on the DNC list and
is never dialled."""

from __future__ import annotations

import asyncio
import csv
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.service import EdgeService
from phoneagent.edge.settings import EdgeSettings
from phoneagent.edge.sip import DialogHandlers, IncomingCall, UAConfig, UserAgent, answer, negotiated
from phoneagent.policy.service import PolicyService
from phoneagent.policy.stores import PolicyStores
from phoneagent.records.service import RecordsService
from phoneagent.runtime import subjects
from phoneagent.runtime.audit_query import AuditFilter, query_audit
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.dial_approvals import NOT_APPROVED
from phoneagent.runtime.numbers import masked_party
from phoneagent.runtime.settings import load
from phoneagent.v1 import (
    call_pb2,
    common_pb2,
    control_api_pb2,
    control_api_pb2_grpc,
    control_pb2,
    policy_pb2,
)
from support.common import wait_for
from support.edge import running_edge
from support.policy_stack import running_policy, running_records

pytestmark = pytest.mark.slow
HOST = "127.0.0.1"
ANSWERS, BUSY, ON_DNC = "+12125550101", "+12125550102", "+12125550103"
PLACED = "+12125550104"  # dialled through PlaceCall (the trunk answers it busy)
CAMPAIGN = "camp-run-t"


@dataclass
class Trunk:
    """The far end of the trunk: answers, rejects or records INVITEs by the dialled number."""

    ua: UserAgent
    rtp: RtpSession
    invites: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def on_call(self, inc: IncomingCall) -> None:
        number = inc.callee.uri.user or ""
        self.invites.append(number)
        if number != ANSWERS:
            await inc.reject(486)
            return
        assert inc.remote_sdp is not None
        local = answer(inc.remote_sdp, address=HOST, port=self.rtp.port)
        await inc.ring()
        dialog = await inc.answer(local, DialogHandlers())
        self.rtp.start(negotiated(inc.remote_sdp, local))
        self.tasks.append(asyncio.create_task(self._talk_then_hang_up(dialog)))

    async def _talk_then_hang_up(self, dialog: object) -> None:
        await asyncio.sleep(0.5)  # the callee listens briefly, then hangs up
        await dialog.bye()  # type: ignore[attr-defined]


@dataclass
class Stack:
    edge: EdgeService
    policy: PolicyService
    records: RecordsService  # the CallControl API (PlaceCall)
    trunk: Trunk
    started: list[call_pb2.CallStarted]


@pytest.fixture(scope="module")
async def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    db = tmp_path_factory.mktemp("campaign") / "policy.sqlite3"
    now = datetime.now(UTC)
    with PolicyStores(db) as stores:
        for number in (ANSWERS, BUSY, ON_DNC, PLACED):
            stores.consent.grant(
                number, "reminder", "signup form", now - timedelta(days=1), now + timedelta(days=30)
            )
        stores.dnc.add(ON_DNC, "opt-out during call", now)

    cleanup = AsyncExitStack()
    common = {"replica_id": "policy-camp-t", "drain_timeout_s": 1.0}
    policy = await cleanup.enter_async_context(running_policy(nats_url, db, common=common))

    trunk_ua = UserAgent(UAConfig(host=HOST, port=0, user="trunk"))
    trunk = Trunk(trunk_ua, await RtpSession.open(HOST, 44000, 44999))
    trunk_ua.on_incoming_call = trunk.on_call
    await trunk_ua.start()

    async def close_trunk() -> None:
        for task in trunk.tasks:
            task.cancel()
        trunk.rtp.close()
        await trunk_ua.close()

    cleanup.push_async_callback(close_trunk)
    edge_settings = load(
        EdgeSettings,
        sip_port=0,
        rtp_port_min=43000,
        rtp_port_max=43999,
        web_enabled=False,
        trunk_uri=f"sip:{HOST}:{trunk_ua.local_address()[1]}",
        no_answer_timeout_s=10.0,
    )
    edge = await cleanup.enter_async_context(
        running_edge(nats_url, edge_settings, tag="camp-t", stages=("asr", "llm", "tts"))
    )

    started: list[call_pb2.CallStarted] = []

    async def on_life(ev: call_pb2.CallEvent, _: Delivery) -> None:
        if ev.WhichOneof("event") == "started" and ev.started.campaign_id == CAMPAIGN:
            started.append(ev.started)

    await edge.bus.subscribe(subjects.ALL_LIFECYCLE, call_pb2.CallEvent, on_life, lane=Lane.CONTROL)
    records = await cleanup.enter_async_context(
        running_records(nats_url, db.parent / "records.sqlite3", replica_id="records-camp-t")
    )
    yield Stack(edge.svc, policy, records, trunk, started)
    await cleanup.aclose()


async def test_campaign_dials_retries_busy_and_skips_dnc(
    stack: Stack, bus: Bus, nats_url: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "number,name,time_zone,account\n"
        f"{ANSWERS},Ann,America/New_York,A-1\n"
        f"{BUSY},Bob,America/New_York,B-2\n"
        f"{ON_DNC},Cy,America/New_York,C-3\n"
    )
    results = tmp_path / "results.csv"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phoneagent.cli",
        "campaign",
        "start",
        str(contacts),
        "--purpose",
        "reminder",
        "--campaign-id",
        CAMPAIGN,
        "--max-concurrent",
        "2",
        "--per-minute",
        "30",
        "--max-attempts",
        "2",
        "--retry-after-s",
        "0.3",
        "--out",
        str(results),
        "--nats-url",
        nats_url,
        env=service_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-2000:]

    rows = {r["number"]: r for r in csv.DictReader(results.open())}
    assert rows[ANSWERS]["status"] == "completed" and rows[ANSWERS]["attempts"] == "1"
    assert rows[BUSY]["status"] == "busy" and rows[BUSY]["attempts"] == "2"
    assert rows[BUSY]["reason"] == "sip 486"
    assert rows[ON_DNC]["status"] == "denied" and rows[ON_DNC]["attempts"] == "0"
    assert rows[ON_DNC]["reason"].startswith("internal_dnc:")

    # The DNC number never reached the trunk; the busy one was tried twice.
    assert sorted(stack.trunk.invites) == [ANSWERS, BUSY, BUSY]
    # The lifecycle events (stored in PA_CALLS) carry the parties masked and only the labels
    # that say how the call was placed: not the contact's name or account.
    dialled = {s.to_uri: s for s in stack.started}
    assert set(dialled) == {masked_party(ANSWERS), masked_party(BUSY)}
    answered = dialled[masked_party(ANSWERS)]
    assert answered.direction == call_pb2.DIRECTION_OUTBOUND
    assert dict(answered.labels) == {"purpose": "reminder", "amd": "hangup"}

    decisions = await query_audit(bus.jetstream(), AuditFilter(campaign_id=CAMPAIGN, subject="dial"))
    verdicts = sorted((d.number_hint[-2:], d.decision) for d in decisions)
    assert verdicts == [
        ("01", policy_pb2.DECISION_ALLOW),
        ("02", policy_pb2.DECISION_ALLOW),
        ("02", policy_pb2.DECISION_ALLOW),
        ("03", policy_pb2.DECISION_DENY),
    ]
    assert ANSWERS not in err.decode()  # progress lines show masked numbers only


async def test_place_call_dials_the_approved_number_once(stack: Stack, bus: Bus) -> None:
    """PlaceCall: policy allows, stores the one-time approval, and the real edge dials the
    normalised number through the trunk; the same decision cannot place a second call."""
    channel = grpc.aio.insecure_channel(f"{HOST}:{stack.records.grpc_port}")
    try:
        api = control_api_pb2_grpc.CallControlStub(channel)
        placed = await api.PlaceCall(
            control_api_pb2.PlaceCallRequest(to="(212) 555-0104", purpose="reminder", agent="dental_clinic")
        )
    finally:
        await channel.close()
    assert placed.decision.decision == policy_pb2.DECISION_ALLOW, placed.decision
    await wait_for(lambda: PLACED in stack.trunk.invites, timeout=10)
    replay = call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=subjects.new_call_id()),
        to_uri=PLACED,
        dial_decision_id=placed.decision.decision_id,
    )
    reply = await bus.request(subjects.edge_dial(), replay, control_pb2.ControlEvent, timeout=5)
    assert reply.WhichOneof("kind") == "error" and reply.error.message.startswith(NOT_APPROVED)
    assert stack.trunk.invites.count(PLACED) == 1
