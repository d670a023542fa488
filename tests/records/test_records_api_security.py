"""The CallControl API's guards: no start on an address other than loopback without a token,
callers without the right token refused, TransferCall only to targets policy approves (with the
approval on the Transfer), TLS when configured, and an audit record for every call naming the
method, the caller's token id (never the token) and the outcome."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from phoneagent.policy.service import PolicyService
from phoneagent.records.control_api import CallControl, serve, token_id
from phoneagent.records.service import RecordsService
from phoneagent.records.settings import RecordsServiceSettings
from phoneagent.records.store import RecordStore
from phoneagent.runtime import approvals, subjects
from phoneagent.runtime.approvals import Verifier
from phoneagent.runtime.audit_query import AuditFilter, query_audit
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.settings import SettingsError, load
from phoneagent.v1 import control_api_pb2, control_api_pb2_grpc, control_pb2, policy_pb2
from support.common import PUBLIC_KEY_FILE, wait_for
from support.policy_stack import control_api, running_policy, running_records
from support.records_sample_call import meta, publish_start

TOKEN = "api-secret-7f3c9a"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
HUMAN = "sip:frontdesk@brightsmile.example.org"  # the example agent's transfer target


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_api_off_loopback_without_a_token_refuses_to_start(host: str) -> None:
    with pytest.raises(SettingsError, match="PA_API_TOKEN: required when PA_GRPC_HOST"):
        load(RecordsServiceSettings, grpc_host=host)
    assert load(RecordsServiceSettings, grpc_host=host, api_token=TOKEN).api_token == TOKEN
    assert load(RecordsServiceSettings, grpc_host="127.0.0.1").api_token == ""  # loopback: optional


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="set both or neither"):
        load(RecordsServiceSettings, tls_cert_file=str(cert))
    with pytest.raises(SettingsError, match="PA_GRPC_TLS_KEY_FILE=.*no such file"):
        load(RecordsServiceSettings, tls_cert_file=str(cert), tls_key_file=str(tmp_path / "none.pem"))


@pytest.fixture(scope="module")
async def policy(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyService]:
    db = tmp_path_factory.mktemp("api-sec-policy") / "policy.sqlite3"
    async with running_policy(nats_url, db, common={"replica_id": "policy-api-sec-t"}) as svc:
        yield svc


@pytest.fixture(scope="module")
async def records(
    policy: PolicyService, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RecordsService]:
    db = tmp_path_factory.mktemp("api-sec-records") / "records.sqlite3"
    async with running_records(nats_url, db, replica_id="records-api-sec-t", api_token=TOKEN) as svc:
        yield svc


@pytest.fixture
async def api(records: RecordsService) -> AsyncIterator[Any]:
    async with control_api(records) as stub:
        yield stub


async def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    code: grpc.StatusCode = err.value.code()
    return code


async def api_audit(bus: Bus, call_id: str, count: int) -> list[policy_pb2.PolicyDecision]:
    """The API's audit records filed under ``call_id`` ("none": calls naming no call)."""

    async def found() -> list[policy_pb2.PolicyDecision]:
        records = await query_audit(bus.jetstream(), AuditFilter(call_id=call_id, subject="api"))
        return records if len(records) >= count else []

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not (records := await found()):
        assert loop.time() < deadline, "API calls not audited"
        await asyncio.sleep(0.05)  # poll the stream until the deadline
    return records


async def active_call(bus: Bus, records: RecordsService) -> str:
    """A call in progress, folded into the records store (TransferCall acts on such calls)."""
    call_id = subjects.new_call_id()
    await publish_start(bus, call_id, time.time_ns())
    assert records.records is not None
    store = records.records
    await wait_for(lambda: store.get(call_id) is not None, timeout=10)
    return call_id


async def test_callers_without_the_token_are_refused_and_audited(api: Any, bus: Bus) -> None:
    before = len(await query_audit(bus.jetstream(), AuditFilter(call_id="none", subject="api")))
    listed = control_api_pb2.ListCallsRequest(limit=1)
    assert await code_of(api.ListCalls(listed)) == grpc.StatusCode.UNAUTHENTICATED
    wrong = (("authorization", "Bearer not-the-token"),)
    assert await code_of(api.ListCalls(listed, metadata=wrong)) == grpc.StatusCode.UNAUTHENTICATED
    place = control_api_pb2.PlaceCallRequest(to="+12125550123", purpose="reminder")
    assert await code_of(api.PlaceCall(place, metadata=wrong)) == grpc.StatusCode.UNAUTHENTICATED
    await api.ListCalls(listed, metadata=AUTH)

    records = (await api_audit(bus, "none", before + 4))[before:]
    assert [(r.rule, r.details["caller"], r.details["outcome"]) for r in records] == [
        ("ListCalls", "unauthenticated", "UNAUTHENTICATED"),
        ("ListCalls", "unauthenticated", "UNAUTHENTICATED"),
        ("PlaceCall", "unauthenticated", "UNAUTHENTICATED"),
        ("ListCalls", token_id(TOKEN), "OK"),
    ]
    assert [r.decision for r in records] == [policy_pb2.DECISION_DENY] * 3 + [policy_pb2.DECISION_ALLOW]
    assert all(TOKEN not in str(r) and "not-the-token" not in str(r) for r in records)


async def test_transfer_call_goes_through_policy(api: Any, bus: Bus, records: RecordsService) -> None:
    call_id = await active_call(bus, records)
    control: list[control_pb2.ControlEvent] = []

    async def on_control(ev: control_pb2.ControlEvent, _: Delivery) -> None:
        control.append(ev)

    await bus.subscribe(subjects.control(call_id), control_pb2.ControlEvent, on_control, lane=Lane.CONTROL)
    transfer = control_api_pb2.TransferCallRequest
    # Not on the agent's list, and a number nobody consented to be called at: refused, nothing sent.
    for target in ("sip:premium@toll.example.com", "+19005550100"):
        denied = api.TransferCall(transfer(call_id=call_id, target=target), metadata=AUTH)
        assert await code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    # The agent's human: approved, and the Transfer carries policy's approval for this call.
    await api.TransferCall(transfer(call_id=call_id, target=HUMAN, warm=True), metadata=AUTH)
    events = await wait_for(lambda: [e for e in control if e.WhichOneof("kind") == "transfer"], timeout=5)
    assert len(events) == 1 and events[0].transfer.target == HUMAN
    assert events[0].transfer.kind == control_pb2.TRANSFER_KIND_WARM
    Verifier.from_files([PUBLIC_KEY_FILE]).check(
        events[0].transfer.approval, action=approvals.TRANSFER, call_id=call_id, target=HUMAN
    )

    audited = await api_audit(bus, call_id, 3)
    assert [(r.rule, r.details["outcome"], r.details["caller"]) for r in audited] == [
        ("TransferCall", "PERMISSION_DENIED", token_id(TOKEN)),
        ("TransferCall", "PERMISSION_DENIED", token_id(TOKEN)),
        ("TransferCall", "OK", token_id(TOKEN)),
    ]
    policy_said = await query_audit(bus.jetstream(), AuditFilter(call_id=call_id, subject="transfer"))
    assert [r.decision for r in policy_said] == [policy_pb2.DECISION_DENY] * 2 + [policy_pb2.DECISION_ALLOW]


async def test_hang_up_is_audited_under_the_call(api: Any, bus: Bus, records: RecordsService) -> None:
    call_id = await active_call(bus, records)
    await api.HangUp(control_api_pb2.HangUpRequest(call_id=call_id), metadata=AUTH)
    (record,) = await api_audit(bus, call_id, 1)
    assert (record.rule, record.details["method"], record.details["outcome"]) == ("HangUp", "HangUp", "OK")
    assert record.meta.call_id == call_id and record.meta.producer.startswith("records/")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls(bus: Bus, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    settings = load(
        RecordsServiceSettings, grpc_port=0, api_token=TOKEN, tls_cert_file=str(cert), tls_key_file=str(key)
    )
    tls = settings.tls()
    assert tls is not None
    store = RecordStore(str(tmp_path / "records.sqlite3"))

    async def no_dialling(check: policy_pb2.DialCheck, call_id: str) -> policy_pb2.PolicyDecision:
        raise AssertionError("no calls are placed here")

    server, port = await serve(CallControl(bus, store, no_dialling, token=TOKEN), "127.0.0.1", 0, tls)
    secure = grpc.aio.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(cert.read_bytes()))
    plain = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        listed = control_api_pb2.ListCallsRequest(limit=1)
        reply = await control_api_pb2_grpc.CallControlStub(secure).ListCalls(listed, metadata=AUTH)
        assert list(reply.calls) == []
        stub = control_api_pb2_grpc.CallControlStub(plain)
        assert await code_of(stub.ListCalls(listed, metadata=AUTH, timeout=3)) == grpc.StatusCode.UNAVAILABLE
    finally:
        await secure.close()
        await plain.close()
        await server.stop(grace=1.0)
        store.close()


async def test_api_audit_leaves_call_records_alone(api: Any, bus: Bus, records: RecordsService) -> None:
    """Reading a call, or asking about one that does not exist, adds nothing to any record."""
    assert records.records is not None
    store = records.records
    call_id = await active_call(bus, records)
    before = store.get(call_id)
    assert before is not None
    await api.GetCall(control_api_pb2.GetCallRequest(call_id=call_id), metadata=AUTH)
    unknown = subjects.new_call_id()
    missing = api.GetCall(control_api_pb2.GetCallRequest(call_id=unknown), metadata=AUTH)
    assert await code_of(missing) == grpc.StatusCode.NOT_FOUND
    await api_audit(bus, unknown, 1)
    # A later decision on the same stream is folded only after those audit records were handled.
    marker = subjects.new_call_id()
    decision = policy_pb2.PolicyDecision(
        meta=meta(marker), decision_id="m1", decision=policy_pb2.DECISION_ALLOW, subject="disclosure"
    )
    await bus.jetstream().publish(
        subjects.audit(marker), decision.SerializeToString(), stream=subjects.AUDIT_STREAM
    )
    await wait_for(lambda: store.get(marker) is not None, timeout=10)
    assert store.get(unknown) is None
    after = store.get(call_id)
    assert after is not None and after.decisions == before.decisions
