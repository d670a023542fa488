"""Campaigns through the gRPC control API: StartCampaign, GetCampaign, ExportCampaign and
CancelCampaign on the running records service, each dial approved by the running policy service
over the bus (real nats-server, real gRPC; a stand-in edge on the bus answers dials and reports
each call's lifecycle)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from phoneagent.policy.service import PolicyService
from phoneagent.records.service import RecordsService
from phoneagent.runtime import dial_approvals, streams, subjects
from phoneagent.runtime.approvals import Verifier
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.v1 import call_pb2, common_pb2, control_api_pb2, control_pb2
from support.common import PUBLIC_KEY_FILE, wait_for
from support.policy_stack import control_api, running_policy, running_records

TOKEN = "campaign-secret"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
PURPOSE = "appointment-reminder"
CONSENTED = "+12125550141"
NO_CONSENT = "+12125550142"


@pytest.fixture(scope="module")
async def policy(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyService]:
    db = tmp_path_factory.mktemp("policy-campaign-grpc") / "policy.sqlite3"
    async with running_policy(
        nats_url,
        db,
        window_start="00:00",
        window_end="23:59",
        common={"replica_id": "policy-campaign-grpc-t"},
    ) as svc:
        assert svc.stores is not None
        svc.stores.consent.grant(CONSENTED, PURPOSE, "web form", datetime(2026, 1, 1, tzinfo=UTC))
        yield svc


@pytest.fixture(scope="module")
async def records(
    policy: PolicyService, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RecordsService]:
    db = tmp_path_factory.mktemp("records-campaign-grpc") / "records.sqlite3"
    async with running_records(nats_url, db, replica_id="records-campaign-grpc-t", api_token=TOKEN) as svc:
        yield svc


@pytest.fixture
async def api(records: RecordsService) -> AsyncIterator[Any]:
    async with control_api(records) as stub:
        yield stub


async def stand_in_edge(bus: Bus, dialled: list[call_pb2.CallStarted], *, end_calls: bool) -> Any:
    """Answers every dial that carries policy's signed one-time approval for its call and number
    (checked and consumed as the real edge does; a refusal is an error reply); with ``end_calls``
    reports the call answered, then ended by the callee."""
    approvals = await streams.dial_approvals_kv(bus.jetstream())
    verifier = Verifier.from_files([PUBLIC_KEY_FILE])

    async def on_dial(req: call_pb2.CallStarted, _: Delivery) -> control_pb2.ControlEvent:
        try:
            await dial_approvals.redeem(
                approvals, verifier, req.dial_decision_id, req.meta.call_id, req.to_uri
            )
        except PhoneAgentError as exc:
            error = common_pb2.Error(kind=exc.kind.wire, message=exc.message, source="edge")  # type: ignore[arg-type]
            return control_pb2.ControlEvent(error=error)
        dialled.append(req)
        call_id = req.meta.call_id
        meta = common_pb2.EventMeta(call_id=call_id)
        events = [
            call_pb2.CallEvent(answered=call_pb2.CallAnswered(meta=meta)),
            call_pb2.CallEvent(ended=call_pb2.CallEnded(meta=meta, reason=call_pb2.END_REASON_CALLER_HANGUP)),
        ]
        for event in events if end_calls else []:
            await bus.publish(subjects.lifecycle(call_id), event, lane=Lane.CONTROL)
        return control_pb2.ControlEvent()

    return await bus.serve(subjects.edge_dial(), call_pb2.CallStarted, on_dial, queue_group="edge")


async def settled(api: Any, campaign_id: str, timeout: float = 10.0) -> control_api_pb2.CampaignStatus:
    """The campaign's status once it is no longer running (polls GetCampaign until the deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await api.GetCampaign(
            control_api_pb2.GetCampaignRequest(campaign_id=campaign_id), metadata=AUTH
        )
        if status.state != "running" or loop.time() > deadline:
            return status
        await asyncio.sleep(0.05)  # poll the API as an operator would


async def test_campaign_runs_and_exports_results_per_number(
    policy: PolicyService, bus: Bus, api: Any
) -> None:
    dialled: list[call_pb2.CallStarted] = []
    edge = await stand_in_edge(bus, dialled, end_calls=True)
    try:
        contacts = (
            "number,name,time_zone,order\n"
            f"{CONSENTED},Ann,America/New_York,A-1\n{NO_CONSENT},Bob,,B-2\nnope,Eve,,\n"
        )
        started = await api.StartCampaign(
            control_api_pb2.StartCampaignRequest(
                contacts_csv=contacts, purpose=PURPOSE, campaign_id="camp-grpc-1"
            ),
            metadata=AUTH,
        )
        assert started.campaign_id == "camp-grpc-1" and started.contacts == 2
        assert [(r.row, r.reason) for r in started.rejected_rows] == [
            (4, "phone number needs a leading + and country code")
        ]

        final = await settled(api, "camp-grpc-1")
        assert final.state == "finished" and final.pending == 0
        assert dict(final.outcomes) == {"completed": 1, "denied": 1}
        assert [d.to_uri for d in dialled] == [CONSENTED]  # the number without consent was never dialled
        assert dialled[0].campaign_id == "camp-grpc-1" and dialled[0].labels["order"] == "A-1"

        exported = await api.ExportCampaign(
            control_api_pb2.ExportCampaignRequest(campaign_id="camp-grpc-1"), metadata=AUTH
        )
        rows = {r["number"]: r for r in csv.DictReader(io.StringIO(exported.csv))}
        assert rows[CONSENTED]["status"] == "completed" and rows[NO_CONSENT]["status"] == "denied"
        assert rows[NO_CONSENT]["reason"].startswith("consent")
    finally:
        await bus.unsubscribe(edge)


async def test_cancel_stops_a_running_campaign(policy: PolicyService, bus: Bus, api: Any) -> None:
    dialled: list[call_pb2.CallStarted] = []
    edge = await stand_in_edge(bus, dialled, end_calls=False)  # the call stays in progress
    try:
        started = await api.StartCampaign(
            control_api_pb2.StartCampaignRequest(
                contacts_csv=f"number\n{CONSENTED}\n", purpose=PURPOSE, campaign_id="camp-grpc-2"
            ),
            metadata=AUTH,
        )
        assert started.state == "running"
        await wait_for(lambda: dialled, timeout=5)
        cancelled = await api.CancelCampaign(
            control_api_pb2.CancelCampaignRequest(campaign_id="camp-grpc-2"), metadata=AUTH
        )
        assert cancelled.state == "cancelled" and cancelled.pending == 1
        assert (await settled(api, "camp-grpc-2")).state == "cancelled"
    finally:
        await bus.unsubscribe(edge)


async def test_bad_requests_get_clear_errors(policy: PolicyService, api: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.StartCampaign(
            control_api_pb2.StartCampaignRequest(contacts_csv="number\n", purpose=PURPOSE), metadata=AUTH
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no valid contact" in (
        err.value.details() or ""
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        # One line without a newline is CSV text, never a path on the server.
        await api.StartCampaign(
            control_api_pb2.StartCampaignRequest(contacts_csv="/etc/passwd", purpose=PURPOSE), metadata=AUTH
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.GetCampaign(control_api_pb2.GetCampaignRequest(campaign_id="camp-none"), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.GetCampaign(control_api_pb2.GetCampaignRequest(campaign_id="camp-grpc-1"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
