"""Transfer to a human over real SIP/RTP on 127.0.0.1: blind (REFER, followed by the caller's own
user agent) and warm (hold chime for the caller, a spoken summary for the human, then the edge
bridges the two legs). Failures leave the caller with the agent. The summary is asked of TTS
over the bus; here a stand-in TTS answers with a tone (the real one: tests/tts/test_tts_render.py).
A transfer goes ahead only with policy's signed approval for the call and target: a Transfer
without one, or with one for another call or target, is refused and nobody is dialled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from phoneagent.edge.sip import CallFailed, Dialog, DialogHandlers, IncomingCall, SipURI, answer, offer
from phoneagent.runtime import approvals, metrics, subjects
from phoneagent.runtime.approvals import Signer
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.errors import ErrorKind
from phoneagent.runtime.meta import new_meta
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2, policy_pb2
from support.common import signed, wait_for
from support.edge import Edge
from support.sip_phone import HOST, Peer, collect, kinds, new_peer, speak, tone

pytestmark = pytest.mark.slow
HOLD_NOTE = 523.25
SUMMARY_NOTE = 300.0  # what the stand-in TTS "says"
UNSPEAKABLE = "A summary the stand-in TTS fails to render."


@pytest.fixture(scope="module", autouse=True)
async def tts_stand_in(nats_url: str) -> AsyncIterator[list[media_pb2.RenderRequest]]:
    """Answers the edge's render requests like the TTS service: 2 s of a 300 Hz tone at the rate asked."""
    asked: list[media_pb2.RenderRequest] = []
    bus = Bus("tts-stand-in")
    await bus.connect(nats_url)

    async def on_render(req: media_pb2.RenderRequest, _: Delivery) -> media_pb2.RenderReply:
        asked.append(req)
        if req.text == UNSPEAKABLE:
            err = common_pb2.Error(kind=ErrorKind.ENGINE_FAILURE.wire, message="speech could not be rendered")  # type: ignore[arg-type]
            return media_pb2.RenderReply(meta=new_meta(req.meta.call_id, "tts/stand-in"), error=err)
        rate = req.sample_rate
        speech = tone(SUMMARY_NOTE, 2 * rate, amp=8000.0) if rate == 8000 else np.zeros(0, np.int16)
        return media_pb2.RenderReply(
            meta=new_meta(req.meta.call_id, "tts/stand-in"),
            pcm=speech.astype("<i2").tobytes(),
            sample_rate=rate,
        )

    await bus.serve(
        subjects.tts_render(), media_pb2.RenderRequest, on_render, queue_group="tts", lane=Lane.DATA
    )
    yield asked
    await bus.close()


async def human(status: int = 200) -> Peer:
    """The human's phone: answers (playing a 1.2 kHz tone) or rejects with ``status``."""
    holder: dict[str, Peer] = {}

    async def on_call(inc: IncomingCall) -> None:
        if status != 200:
            await inc.reject(status)
            return
        p = holder["peer"]
        assert inc.remote_sdp is not None
        local = answer(inc.remote_sdp, address=HOST, port=p.rtp.port)
        await inc.ring()
        p.media(await inc.answer(local, p.handlers()), local)

    peer = await new_peer(on_call)
    peer.source = lambda n: tone(1200, 160, n * 160)
    holder["peer"] = peer
    return peer


async def caller(edge: Edge, follow_refer: bool = True) -> tuple[Peer, str, list[Dialog]]:
    """A caller on a call with the edge whose phone follows a REFER by calling the target."""
    peer = await new_peer()
    new_legs: list[Dialog] = []

    async def on_refer(_: Dialog, target: SipURI) -> int:
        try:
            new_legs.append(await peer.ua.call(target, offer(HOST, 42998), timeout_s=5))
        except CallFailed as exc:
            return exc.status
        return 200

    handlers = DialogHandlers(on_bye=lambda _: peer.bye.set(), on_refer=on_refer if follow_refer else None)
    local = offer(HOST, peer.rtp.port)
    before = {s.meta.call_id for s in edge.lifecycle("started")}
    dialog = await peer.ua.call(f"sip:+14155550134@{HOST}:{edge.port}", local, handlers=handlers)
    peer.media(dialog, local)
    started = [s for s in edge.lifecycle("started") if s.meta.call_id not in before]
    call_id = started[0].meta.call_id
    await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=5)
    return peer, call_id, new_legs


def target_uri(target: Peer) -> str:
    host, port = target.ua.local_address()
    return f"sip:human@{host}:{port}"


async def transfer(
    edge: Edge,
    call_id: str,
    target: Peer,
    kind: int,
    summary: str = "",
    approval: policy_pb2.Approval | None = None,
) -> list[Any]:
    """Send the call's Transfer as the dialog does, with policy's approval (``approval``, or one
    signed for this call and target)."""
    control = await collect(edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL)
    uri = target_uri(target)
    if approval is None:
        approval = signed(approvals.TRANSFER, call_id, uri)
    ev = control_pb2.ControlEvent(
        meta=common_pb2.EventMeta(call_id=call_id),
        transfer=control_pb2.Transfer(target=uri, kind=kind, summary=summary, approval=approval),  # type: ignore[arg-type]
    )
    await edge.bus.publish(subjects.control(call_id), ev, lane=Lane.CONTROL)
    return control


def count(kind: str, outcome: str) -> float:
    return float(metrics.TRANSFERS.labels(kind=kind, outcome=outcome)._value.get())


def refusals(reason: str) -> float:
    return float(metrics.APPROVALS_REFUSED.labels(action="transfer", reason=reason)._value.get())


async def agent_still_heard(edge: Edge, peer: Peer, call_id: str) -> None:
    """The agent has the call back: its speech reaches the caller, and the call is not over."""
    since = asyncio.get_running_loop().time()
    await speak(edge.bus, call_id, 25, gen=7)
    await wait_for(lambda: len(peer.heard(1000, since=since)) >= 10, timeout=5)
    assert not edge.lifecycle("ended", call_id)


async def test_blind_transfer_caller_follows_refer(edge: Edge) -> None:
    target = await human()
    peer, call_id, legs = await caller(edge)
    before = count("blind", "ok")
    try:
        control = await transfer(edge, call_id, target, control_pb2.TRANSFER_KIND_BLIND)
        result = await wait_for(lambda: kinds(control, "transfer_result"), timeout=10)
        assert result[0].ok and result[0].detail == "sip 200"
        assert legs and legs[0].remote.uri.user == "human"  # the caller now talks to the human
        assert target.dialog is not None and not target.dialog.ended.is_set()
        await asyncio.wait_for(peer.bye.wait(), 5)  # the edge left the call
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_TRANSFERRED
        assert count("blind", "ok") == before + 1
        await wait_for(lambda: call_id not in edge.svc.calls, timeout=3)
    finally:
        for leg in legs:
            await leg.bye()
        await peer.close()
        await target.close()


@pytest.mark.parametrize("human_status,follow,detail", [(486, True, "sip 486"), (200, False, "sip 603")])
async def test_blind_transfer_failure_keeps_the_call(
    edge: Edge, human_status: int, follow: bool, detail: str
) -> None:
    """The human is busy (NOTIFY sipfrag 486), or the caller's phone refuses the REFER (603)."""
    target = await human(human_status)
    peer, call_id, _ = await caller(edge, follow_refer=follow)
    before = count("blind", "failed")
    try:
        control = await transfer(edge, call_id, target, control_pb2.TRANSFER_KIND_BLIND)
        result = await wait_for(lambda: kinds(control, "transfer_result"), timeout=10)
        assert not result[0].ok and result[0].detail == detail
        assert count("blind", "failed") == before + 1
        await agent_still_heard(edge, peer, call_id)
        assert not peer.bye.is_set()
    finally:
        assert peer.dialog is not None
        await peer.dialog.bye()
        await peer.close()
        await target.close()


async def test_warm_transfer_holds_briefs_and_bridges(
    edge: Edge, tts_stand_in: list[media_pb2.RenderRequest]
) -> None:
    target = await human()
    peer, call_id, _ = await caller(edge)
    peer.source = lambda n: tone(700, 160, n * 160)
    try:
        summary = "Caller Ann would like to move her cleaning to next Tuesday morning."
        control = await transfer(edge, call_id, target, control_pb2.TRANSFER_KIND_WARM, summary)
        await wait_for(lambda: len(peer.heard(HOLD_NOTE)) >= 3, timeout=30)  # the hold chime
        result = await wait_for(lambda: kinds(control, "transfer_result"), timeout=40)
        assert result[0].ok and result[0].detail == "bridged"
        # TTS was asked for the summary, for this call, at the rate the human's leg plays.
        asked = [r for r in tts_stand_in if r.meta.call_id == call_id]
        assert [(r.text, r.sample_rate) for r in asked] == [(summary, 8000)]
        assert asked[0].meta.producer == "edge" and asked[0].meta.ts_unix_ns > 0
        # The human heard the summary (over a second of speech) before the caller was connected.
        spoken = [f for _, f in target.received if np.abs(f).max() > 1000]
        assert len(spoken) >= 50
        assert not target.heard(700)  # nothing of the caller leaked into the summary
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_TRANSFERRED
        # Bridged: each side hears the other's tone through the edge.
        await wait_for(lambda: len(target.heard(700)) >= 10, timeout=5)
        await wait_for(lambda: len(peer.heard(1200)) >= 10, timeout=5)
        assert call_id in edge.svc.calls  # the legs stay up after the agent left
        assert peer.dialog is not None
        await peer.dialog.bye()
        await asyncio.wait_for(target.bye.wait(), 5)  # hanging up one side hangs up the other
        await wait_for(lambda: call_id not in edge.svc.calls, timeout=3)
    finally:
        await peer.close()
        await target.close()


async def test_warm_transfer_not_answered_returns_to_agent(edge: Edge) -> None:
    target = await human(486)
    peer, call_id, _ = await caller(edge)
    before = count("warm", "failed")
    try:
        control = await transfer(edge, call_id, target, control_pb2.TRANSFER_KIND_WARM, "A short summary.")
        result = await wait_for(lambda: kinds(control, "transfer_result"), timeout=40)
        assert not result[0].ok
        assert result[0].detail == "sip 486" or result[0].detail.startswith("summary could not be rendered")
        assert count("warm", "failed") == before + 1
        await agent_still_heard(edge, peer, call_id)
        since = asyncio.get_running_loop().time() + 0.1
        await asyncio.sleep(0.5)  # a window in which the hold chime must not come back
        assert not peer.heard(HOLD_NOTE, since=since)
    finally:
        assert peer.dialog is not None
        await peer.dialog.bye()
        await peer.close()
        await target.close()


async def test_warm_transfer_summary_tts_cannot_render_keeps_the_call(edge: Edge) -> None:
    rung: list[IncomingCall] = []

    async def on_call(inc: IncomingCall) -> None:
        rung.append(inc)
        await inc.reject(486)

    target = await new_peer(on_call)
    peer, call_id, _ = await caller(edge)
    before = count("warm", "failed")
    try:
        control = await transfer(edge, call_id, target, control_pb2.TRANSFER_KIND_WARM, UNSPEAKABLE)
        result = await wait_for(lambda: kinds(control, "transfer_result"), timeout=40)
        assert not result[0].ok
        assert result[0].detail == "summary could not be rendered: speech could not be rendered"
        assert count("warm", "failed") == before + 1
        assert not rung, "the human is not dialled without a summary to play"
        await agent_still_heard(edge, peer, call_id)
    finally:
        assert peer.dialog is not None
        await peer.dialog.bye()
        await peer.close()
        await target.close()


async def test_caller_hangs_up_while_the_human_rings(edge: Edge) -> None:
    """The warm transfer is abandoned: the human's ringing phone gets CANCEL, the call ends normally."""
    ringing: list[IncomingCall] = []

    async def ring_forever(inc: IncomingCall) -> None:
        await inc.ring()
        ringing.append(inc)

    target = await new_peer(ring_forever)
    peer, call_id, _ = await caller(edge)
    try:
        await transfer(edge, call_id, target, control_pb2.TRANSFER_KIND_WARM, "A short summary.")
        await wait_for(lambda: ringing, timeout=30)
        assert peer.dialog is not None
        await peer.dialog.bye()
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=5)
        assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
        await wait_for(lambda: not ringing[0].pending, timeout=5)  # CANCEL reached the human
        await wait_for(lambda: call_id not in edge.svc.calls, timeout=3)
    finally:
        await peer.close()
        await target.close()


async def test_transfer_without_policy_approval_is_refused(edge: Edge) -> None:
    """Forged Transfers (blind and warm): none rings the human, each is answered with a failed
    TransferResult and counted by reason, and the caller stays with the agent."""
    rung: list[IncomingCall] = []

    async def on_call(inc: IncomingCall) -> None:
        rung.append(inc)
        await inc.reject(486)

    target = await new_peer(on_call)
    peer, call_id, legs = await caller(edge)
    other = await new_peer()
    uri = target_uri(target)
    forged = [
        (None, "unsigned"),
        (signed(approvals.TRANSFER, call_id, uri, signer=Signer.generate()), "unknown_key"),
        (signed(approvals.TRANSFER, subjects.new_call_id(), uri), "wrong_call"),
        (signed(approvals.TRANSFER, call_id, target_uri(other)), "mismatch"),
        (signed(approvals.DIAL, call_id, uri), "mismatch"),
        (signed(approvals.TRANSFER, call_id, uri, ttl_s=-1), "expired"),
    ]
    try:
        for kind in (control_pb2.TRANSFER_KIND_BLIND, control_pb2.TRANSFER_KIND_WARM):
            for approval, reason in forged:
                before = refusals(reason)
                ev = control_pb2.ControlEvent(
                    meta=common_pb2.EventMeta(call_id=call_id),
                    transfer=control_pb2.Transfer(target=uri, kind=kind, summary="Hi.", approval=approval),  # type: ignore[arg-type]
                )
                control = await collect(
                    edge.bus, subjects.control(call_id), control_pb2.ControlEvent, Lane.CONTROL
                )
                await edge.bus.publish(subjects.control(call_id), ev, lane=Lane.CONTROL)
                result = await wait_for(lambda c=control: kinds(c, "transfer_result"), timeout=5)
                assert not result[0].ok and "not approved by policy" in result[0].detail, reason
                assert refusals(reason) == before + 1, reason
        await agent_still_heard(edge, peer, call_id)
        assert not rung and not legs and not peer.bye.is_set()
    finally:
        assert peer.dialog is not None
        await peer.dialog.bye()
        await peer.close()
        await target.close()
        await other.close()


async def test_an_approval_is_used_once(edge: Edge) -> None:
    """The same signed approval sent again (a replay) is refused."""
    target = await human(486)
    peer, call_id, _ = await caller(edge)
    approval = signed(approvals.TRANSFER, call_id, target_uri(target))
    try:
        control = await transfer(edge, call_id, target, control_pb2.TRANSFER_KIND_BLIND, approval=approval)
        first = await wait_for(lambda: kinds(control, "transfer_result"), timeout=10)
        assert not first[0].ok and first[0].detail == "sip 486"  # carried out: the human was busy
        before = refusals("used")
        control = await transfer(edge, call_id, target, control_pb2.TRANSFER_KIND_BLIND, approval=approval)
        again = await wait_for(lambda: kinds(control, "transfer_result"), timeout=10)
        assert not again[0].ok and "already used" in again[0].detail
        assert refusals("used") == before + 1
    finally:
        assert peer.dialog is not None
        await peer.dialog.bye()
        await peer.close()
        await target.close()
