"""Bus authentication and authorisation against a real nats-server: a client without a valid
credential is refused, and each service's user can publish what its service sends and nothing
else (the edge cannot make the agent say anything, the TTS sends no control event but its own
errors, only policy writes dial approvals)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from phoneagent.runtime import bus_auth, dial_approvals, streams, subjects
from phoneagent.runtime.approvals import Verifier
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.bus_auth import OPERATOR, BusAuth
from phoneagent.runtime.errors import Unavailable
from phoneagent.runtime.messages import Lane
from phoneagent.runtime.natsserver import NatsServer
from phoneagent.v1 import common_pb2, control_pb2, policy_pb2
from support.common import PUBLIC_KEY_FILE, SIGNER

CALL = "authcall"
BusFor = Callable[[str], Awaitable[Bus]]

# What each role's service sends, written out by hand from the services' code (not derived
# from bus_auth, which is what is under test). Keys are the subject kinds of ``_targets``.
MAY_PUBLISH: dict[str, set[str]] = {
    "edge": {
        "audio",
        "lifecycle",
        "recording",
        "ctl.barge_in",
        "ctl.playback_done",
        "ctl.transfer_result",
        "ctl.dtmf",
        "ctl.directive",
        "tts.render",
        "session.claim",
    },
    "asr": {"asr", "transcript"},
    "llm": {"reply", "tool", "ctl.cancel", "ctl.hangup", "ctl.transfer", "policy.transfercheck"},
    "tts": {"speech", "ctl.error"},
    "policy": {"say", "record", "audit", "ctl.directive", "kv.approvals"},
    "records": {
        "policy.dialcheck",
        "policy.transfercheck",
        "edge.dial",
        "ctl.hangup",
        "ctl.transfer",
        "audit",  # the control API's audit of each call it serves
    },
    "harness": set(),
    "audit": set(),
    "campaign": {"policy.dialcheck", "edge.dial", "ctl.hangup"},
}


def _targets() -> dict[str, str]:
    """One subject of every kind in the subjects module (control: one per event kind)."""
    out = {
        "say": subjects.say(CALL),
        "reply": subjects.reply(CALL),
        "transcript": subjects.transcript(CALL),
        "audio": subjects.audio_in(CALL),
        "asr": subjects.asr_events(CALL),
        "speech": subjects.speech(CALL),
        "tool": subjects.tool(CALL),
        "record": subjects.record(CALL, "say"),
        "lifecycle": subjects.lifecycle(CALL),
        "recording": subjects.recording(CALL),
        "audit": subjects.audit(CALL),
        "edge.dial": subjects.edge_dial(),
        "tts.render": subjects.tts_render(),
        "policy.dialcheck": subjects.dial_check(),
        "policy.transfercheck": subjects.transfer_check(),
        "session.claim": subjects.session_claim("tts"),
        "kv.approvals": f"$KV.{streams.DIAL_APPROVALS_BUCKET}.forged",
    }
    for kind in subjects.CONTROL_KINDS:
        out[f"ctl.{kind}"] = subjects.control(CALL)
    return out


async def _wait(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_a_client_without_a_valid_credential_is_refused(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with pytest.raises(Unavailable):
        await Bus("anonymous").connect(nats_server.url, auth=BusAuth())
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    with pytest.raises(Unavailable):
        await Bus("impostor").connect(nats_server.url, auth=BusAuth("edge", str(wrong)))


def test_password_files_are_readable_by_their_owner_only(nats_server: NatsServer) -> None:
    for role in (*bus_auth.ROLES, OPERATOR):
        path = Path(nats_server.auth(role).password_file)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    conf = nats_server.data_dir / "nats-server.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


@pytest.mark.parametrize("role", list(MAY_PUBLISH))
async def test_each_user_publishes_its_own_subjects_and_nothing_else(
    role: str, bus: Bus, bus_for: BusFor
) -> None:
    """The operator listens on everything; every kind of subject is tried as ``role``: what
    its service sends arrives, anything else never does and the server reports the refusal."""
    got: list[str] = []
    # Sent by the operator after the role's messages have been routed: once both have reached
    # their callbacks, so has everything before them (unsubscribing drops what is still queued
    # in the client, which is what made this test miss allowed subjects on CI).
    sentinels = {"pa.v1.test.sentinel": asyncio.Event(), "$KV.test_sentinel.done": asyncio.Event()}

    async def on_msg(msg: object) -> None:
        subject = msg.subject  # type: ignore[attr-defined]
        if subject in sentinels:
            sentinels[subject].set()
        else:
            got.append(subject)

    assert bus.data is not None
    listener = await bus.data.subscribe("pa.v1.>", cb=on_msg)
    kv_listener = await bus.data.subscribe("$KV.>", cb=on_msg)
    await bus.data.flush()
    client = await bus_for(role)
    targets = _targets()
    for kind, subject in targets.items():
        if kind.startswith("ctl."):
            event = control_pb2.ControlEvent(meta=common_pb2.EventMeta(call_id=CALL))
            getattr(event, kind.removeprefix("ctl.")).SetInParent()
            await client.publish(subject, event, lane=Lane.CONTROL)
        else:
            assert client.data is not None
            await client.data.publish(subject, b"\x00")
    assert client.data is not None and client.control is not None
    await client.data.flush()
    await client.control.flush()
    for subject in sentinels:  # routed after everything the role sent
        await bus.data.publish(subject, b"")
    async with asyncio.timeout(10):
        for seen in sentinels.values():
            await seen.wait()
    await listener.unsubscribe()
    await kv_listener.unsubscribe()

    expected = {
        targets[k] if not k.startswith("ctl.") else f"{targets[k]}.{k[4:]}" for k in MAY_PUBLISH[role]
    }
    assert set(got) == expected, f"{role}: unexpected {set(got) - expected}, missing {expected - set(got)}"
    refused = [k for k in targets if k not in MAY_PUBLISH[role]]
    assert await _wait(lambda: len(client.denied) >= len(refused)), list(client.denied)
    assert all("publish" in d.lower() for d in client.denied), list(client.denied)


@pytest.mark.parametrize("role", ["tts", "records", "audit", "campaign"])
async def test_who_may_not_hear_the_caller_cannot_subscribe_to_transcripts(
    role: str, bus: Bus, bus_for: BusFor
) -> None:
    got: list[str] = []
    # Sent by the operator after the role's messages have been routed: once both have reached
    # their callbacks, so has everything before them (unsubscribing drops what is still queued
    # in the client, which is what made this test miss allowed subjects on CI).
    sentinels = {"pa.v1.test.sentinel": asyncio.Event(), "$KV.test_sentinel.done": asyncio.Event()}

    async def on_msg(msg: object) -> None:
        subject = msg.subject  # type: ignore[attr-defined]
        if subject in sentinels:
            sentinels[subject].set()
        else:
            got.append(subject)

    client = await bus_for(role)
    assert client.data is not None and bus.data is not None
    await client.data.subscribe(subjects.ALL_TRANSCRIPTS, cb=on_msg)
    await client.data.flush()
    assert await _wait(lambda: any("subscription" in d.lower() for d in client.denied)), list(client.denied)
    await bus.data.publish(subjects.transcript(CALL), b"\x00")
    await bus.data.flush()
    await client.data.flush()
    assert got == []


async def test_only_policy_writes_dial_approvals_and_the_edge_uses_them_once(bus_for: BusFor) -> None:
    operator = await bus_for(OPERATOR)
    await streams.ensure(operator.jetstream())
    policy, edge = await bus_for("policy"), await bus_for("edge")
    await dial_approvals.approve(policy.jetstream(), SIGNER, "decision-1", CALL, "+12125550123")

    with pytest.raises(Exception):  # noqa: B017 - refused by the server; the request times out
        kv = await streams.dial_approvals_kv(edge.jetstream())
        await asyncio.wait_for(kv.put("decision-2", b'{"number": "+12125550100"}'), 3.0)
    assert any(streams.DIAL_APPROVALS_BUCKET in d for d in edge.denied), list(edge.denied)

    kv = await streams.dial_approvals_kv(edge.jetstream())
    verifier = Verifier.from_files([PUBLIC_KEY_FILE])
    approval = await dial_approvals.redeem(kv, verifier, "decision-1", CALL, "tel:+1 212 555 0123")
    assert approval.number == "+12125550123"
    with pytest.raises(dial_approvals.DialNotApproved) as used:
        await dial_approvals.redeem(kv, verifier, "decision-1", CALL, "+12125550123")
    assert used.value.reason == "unknown"
    with pytest.raises(dial_approvals.DialNotApproved):
        await dial_approvals.redeem(kv, verifier, "decision-2", CALL, "+12125550100")


@pytest.mark.parametrize("role", ["llm", "records"])
async def test_llm_and_records_ask_policy_about_transfers_and_only_policy_answers(
    role: str, bus_for: BusFor
) -> None:
    policy, asker = await bus_for("policy"), await bus_for(role)

    async def decide(check: policy_pb2.TransferCheck, _: Delivery) -> policy_pb2.PolicyDecision:
        return policy_pb2.PolicyDecision(subject="transfer", rule=check.target)

    await policy.serve(subjects.transfer_check(), policy_pb2.TransferCheck, decide)
    assert policy.control is not None
    await policy.control.flush()
    decision = await asker.request(
        subjects.transfer_check(),
        policy_pb2.TransferCheck(target="sip:desk@example.com"),
        policy_pb2.PolicyDecision,
        timeout=3.0,
    )
    assert decision.rule == "sip:desk@example.com"

    # no other service may answer transfer checks, nor ask them
    for other in ("edge", "tts", "asr"):
        impostor = await bus_for(other)
        assert impostor.control is not None
        await impostor.control.subscribe(subjects.transfer_check())
        await impostor.control.flush()
        denied = impostor.denied
        assert await _wait(lambda: any("subscription" in d.lower() for d in denied)), other  # noqa: B023
    with pytest.raises(Exception):  # noqa: B017 - the publish is refused; the request times out
        await impostor.request(
            subjects.transfer_check(), policy_pb2.TransferCheck(), policy_pb2.PolicyDecision, timeout=1.0
        )


def test_every_user_has_permissions_and_the_server_config_names_them() -> None:
    passwords = {role: f"pw-{role}" for role in (*bus_auth.ROLES, OPERATOR)}
    text = bus_auth.server_config(passwords)
    for role in passwords:
        assert f'"user": "{role}"' in text
    # nobody but the operator may publish into another user's inbox or on everything
    for role in bus_auth.ROLES:
        perms = bus_auth.permissions(role)
        assert ">" not in perms.publish and not any(p.startswith("_INBOX") for p in perms.publish)
        assert [p for p in perms.subscribe if p.startswith("_INBOX")] == [f"_INBOX.{role}.>"]
    with pytest.raises(Exception, match="unknown bus role"):
        bus_auth.permissions("mallory")


def test_control_kinds_are_the_control_event_kinds() -> None:
    oneof = control_pb2.ControlEvent.DESCRIPTOR.oneofs_by_name["kind"]
    assert set(subjects.CONTROL_KINDS) == {f.name for f in oneof.fields}
